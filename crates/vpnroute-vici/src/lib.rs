//! # vpnroute-vici
//!
//! A synchronous client for strongSwan's VICI protocol (the Versatile IKE Control Interface
//! that `swanctl` speaks to charon over a Unix socket), written against the protocol's
//! specification (`src/libcharon/plugins/vici/README.md` in strongSwan). It owns:
//!
//! * [`Message`]: VICI's ordered tree of key/values, sections and lists, with its binary
//!   encoding ([`Message::encode`], [`Message::decode`]);
//! * packet framing ([`Packet`]): a 32-bit big-endian length, a type byte, a name for named
//!   types, then the message;
//! * [`Client`]: command requests (with their streamed events, as `list-sas` uses them),
//!   event registration and reception, and typed helpers for the commands vpnroute uses.
//!
//! It is our own rather than the `rustici` crate because that one is LGPL-2.1 and this
//! workspace is Apache-2.0; the protocol is small.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Largest packet accepted (charon's own limit is 512 KiB by default; list-sas answers for
/// thousands of SAs stay far below this).
pub const MAX_PACKET: usize = 16 * 1024 * 1024;

/// Element types inside a message.
mod element {
    pub const SECTION_START: u8 = 1;
    pub const SECTION_END: u8 = 2;
    pub const KEY_VALUE: u8 = 3;
    pub const LIST_START: u8 = 4;
    pub const LIST_ITEM: u8 = 5;
    pub const LIST_END: u8 = 6;
}

/// Packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    CmdRequest = 0,
    CmdResponse = 1,
    CmdUnknown = 2,
    EventRegister = 3,
    EventUnregister = 4,
    EventConfirm = 5,
    EventUnknown = 6,
    Event = 7,
}

impl PacketType {
    fn from_byte(byte: u8) -> Option<Self> {
        use PacketType::*;
        Some(match byte {
            0 => CmdRequest,
            1 => CmdResponse,
            2 => CmdUnknown,
            3 => EventRegister,
            4 => EventUnregister,
            5 => EventConfirm,
            6 => EventUnknown,
            7 => Event,
            _ => return None,
        })
    }

    /// Whether a name (command or event) follows the type byte.
    fn is_named(self) -> bool {
        matches!(
            self,
            PacketType::CmdRequest | PacketType::EventRegister | PacketType::EventUnregister | PacketType::Event
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("VICI I/O: {0}")]
    Io(#[from] io::Error),
    #[error("malformed VICI data: {0}")]
    Malformed(String),
    #[error("charon does not know the command {0:?}")]
    UnknownCommand(String),
    #[error("charon does not know the event {0:?}")]
    UnknownEvent(String),
    #[error("VICI {command} failed: {message}")]
    Failed { command: String, message: String },
    #[error("unexpected VICI packet {0:?}")]
    Unexpected(PacketType),
}

pub type Result<T> = std::result::Result<T, Error>;

fn malformed(message: impl Into<String>) -> Error {
    Error::Malformed(message.into())
}

/// One value in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A key/value (bytes; charon's are text).
    Str(Vec<u8>),
    Section(Message),
    List(Vec<Vec<u8>>),
}

/// An ordered VICI message: names are unique within a section in practice, but order is
/// kept (charon's answers and configurations depend on it for readability only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub entries: Vec<(String, Value)>,
}

impl Message {
    pub fn new() -> Self {
        Message::default()
    }

    /// Builder: adds a key/value.
    pub fn kv(mut self, key: &str, value: impl ToString) -> Self {
        self.entries
            .push((key.into(), Value::Str(value.to_string().into_bytes())));
        self
    }

    /// Builder: adds a section.
    pub fn section(mut self, key: &str, section: Message) -> Self {
        self.entries.push((key.into(), Value::Section(section)));
        self
    }

    /// Builder: adds a list of text items.
    pub fn list<I, S>(mut self, key: &str, items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        let items = items.into_iter().map(|s| s.to_string().into_bytes()).collect();
        self.entries.push((key.into(), Value::List(items)));
        self
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A key/value as text (lossy UTF-8).
    pub fn str(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::Str(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        }
    }

    pub fn sub(&self, key: &str) -> Option<&Message> {
        match self.get(key)? {
            Value::Section(section) => Some(section),
            _ => None,
        }
    }

    /// A list's items as text.
    pub fn strings(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Value::List(items)) => items.iter().map(|i| String::from_utf8_lossy(i).into_owned()).collect(),
            _ => Vec::new(),
        }
    }

    /// Sections of this message, in order (charon's list-sas event: one per IKE SA name).
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Message)> {
        self.entries.iter().filter_map(|(k, v)| match v {
            Value::Section(s) => Some((k.as_str(), s)),
            _ => None,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        for (key, value) in &self.entries {
            match value {
                Value::Str(bytes) => {
                    out.push(element::KEY_VALUE);
                    put_name(out, key)?;
                    put_value(out, bytes)?;
                }
                Value::Section(section) => {
                    out.push(element::SECTION_START);
                    put_name(out, key)?;
                    section.encode_into(out)?;
                    out.push(element::SECTION_END);
                }
                Value::List(items) => {
                    out.push(element::LIST_START);
                    put_name(out, key)?;
                    for item in items {
                        out.push(element::LIST_ITEM);
                        put_value(out, item)?;
                    }
                    out.push(element::LIST_END);
                }
            }
        }
        Ok(())
    }

    pub fn decode(bytes: &[u8]) -> Result<Message> {
        let mut reader = Reader { bytes, at: 0 };
        let message = decode_section(&mut reader, 0)?;
        if reader.at != bytes.len() {
            return Err(malformed("SECTION_END without a section"));
        }
        Ok(message)
    }
}

/// Sections nest at most this deep (charon nests 4–5 levels).
const MAX_DEPTH: usize = 64;

fn decode_section(reader: &mut Reader<'_>, depth: usize) -> Result<Message> {
    if depth > MAX_DEPTH {
        return Err(malformed("sections nested too deep"));
    }
    let mut message = Message::new();
    while let Some(&kind) = reader.peek() {
        match kind {
            element::SECTION_END => {
                if depth == 0 {
                    return Err(malformed("SECTION_END without a section"));
                }
                reader.at += 1;
                return Ok(message);
            }
            element::KEY_VALUE => {
                reader.at += 1;
                let key = reader.name()?;
                let value = reader.value()?;
                message.entries.push((key, Value::Str(value)));
            }
            element::SECTION_START => {
                reader.at += 1;
                let key = reader.name()?;
                let section = decode_section(reader, depth + 1)?;
                message.entries.push((key, Value::Section(section)));
            }
            element::LIST_START => {
                reader.at += 1;
                let key = reader.name()?;
                let mut items = Vec::new();
                loop {
                    match reader.byte()? {
                        element::LIST_ITEM => items.push(reader.value()?),
                        element::LIST_END => break,
                        other => return Err(malformed(format!("element {other} inside a list"))),
                    }
                }
                message.entries.push((key, Value::List(items)));
            }
            other => return Err(malformed(format!("unknown element type {other}"))),
        }
    }
    if depth > 0 {
        return Err(malformed("section not closed"));
    }
    Ok(message)
}

fn put_name(out: &mut Vec<u8>, name: &str) -> Result<()> {
    let len = u8::try_from(name.len()).map_err(|_| malformed(format!("name longer than 255 bytes: {name:?}")))?;
    out.push(len);
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

fn put_value(out: &mut Vec<u8>, value: &[u8]) -> Result<()> {
    let len = u16::try_from(value.len()).map_err(|_| malformed("value longer than 65535 bytes"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<&u8> {
        self.bytes.get(self.at)
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| malformed("truncated"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn name(&mut self) -> Result<String> {
        let len = usize::from(self.byte()?);
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed("name is not UTF-8"))
    }

    fn value(&mut self) -> Result<Vec<u8>> {
        let len = self.take(2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        Ok(self.take(len)?.to_vec())
    }
}

/// One VICI packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub kind: PacketType,
    /// Command or event name (named types only).
    pub name: Option<String>,
    pub message: Message,
}

impl Packet {
    /// The packet with its 32-bit length header.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut body = vec![self.kind as u8];
        if self.kind.is_named() {
            put_name(&mut body, self.name.as_deref().unwrap_or_default())?;
        }
        self.message.encode_into(&mut body)?;
        let len = u32::try_from(body.len()).map_err(|_| malformed("packet too large"))?;
        let mut out = len.to_be_bytes().to_vec();
        out.extend(body);
        Ok(out)
    }

    /// Decodes a packet body (without the length header).
    pub fn decode(body: &[u8]) -> Result<Packet> {
        let mut reader = Reader { bytes: body, at: 0 };
        let byte = reader.byte()?;
        let kind = PacketType::from_byte(byte).ok_or_else(|| malformed(format!("unknown packet type {byte}")))?;
        let name = if kind.is_named() { Some(reader.name()?) } else { None };
        let message = Message::decode(&body[reader.at..])?;
        Ok(Packet { kind, name, message })
    }
}

fn read_packet(stream: &mut UnixStream) -> Result<Packet> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 || len > MAX_PACKET {
        return Err(malformed(format!("packet length {len}")));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Packet::decode(&body)
}

/// A named event received from charon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub message: Message,
}

/// A connection to charon's VICI socket. Events that arrive while a command waits for its
/// answer are queued for [`Client::next_event`].
pub struct Client {
    stream: UnixStream,
    events: VecDeque<Event>,
}

/// Turns a `success`/`errmsg` answer into a result.
fn check(command: &str, answer: Message) -> Result<Message> {
    match answer.str("success").as_deref() {
        Some("no") => Err(Error::Failed {
            command: command.to_string(),
            message: answer.str("errmsg").unwrap_or_else(|| "no error message".into()),
        }),
        _ => Ok(answer),
    }
}

impl Client {
    /// Connects to a socket path (without the `unix://` scheme).
    pub fn connect(path: impl AsRef<Path>) -> Result<Client> {
        let stream = UnixStream::connect(path)?;
        Ok(Client::from_stream(stream))
    }

    pub fn from_stream(stream: UnixStream) -> Client {
        Client {
            stream,
            events: VecDeque::new(),
        }
    }

    /// Bounds every read and write (`None`: wait forever).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)?;
        Ok(())
    }

    fn send(&mut self, packet: &Packet) -> Result<()> {
        let bytes = packet.encode()?;
        self.stream.write_all(&bytes)?;
        Ok(())
    }

    /// Reads until a packet other than an event arrives (events are queued, or handed to
    /// `on_event` when it takes them).
    fn answer(&mut self, on_event: &mut dyn FnMut(&str, Message) -> Option<Message>) -> Result<Packet> {
        loop {
            let packet = read_packet(&mut self.stream)?;
            if packet.kind != PacketType::Event {
                return Ok(packet);
            }
            let name = packet.name.unwrap_or_default();
            if let Some(message) = on_event(&name, packet.message) {
                self.events.push_back(Event { name, message });
            }
        }
    }

    /// Sends a command and returns its answer (not checked for `success`).
    pub fn call(&mut self, command: &str, message: Message) -> Result<Message> {
        self.call_streamed(command, None, message, &mut |_| {})
    }

    /// Sends a command whose results arrive as `stream_event` events before the answer
    /// (`list-sas` → `list-sa`): registers for the event, collects, unregisters.
    pub fn call_streamed(
        &mut self,
        command: &str,
        stream_event: Option<&str>,
        message: Message,
        on_item: &mut dyn FnMut(Message),
    ) -> Result<Message> {
        if let Some(event) = stream_event {
            self.register(event)?;
        }
        self.send(&Packet {
            kind: PacketType::CmdRequest,
            name: Some(command.to_string()),
            message,
        })?;
        let mut collect = |name: &str, message: Message| {
            if Some(name) == stream_event {
                on_item(message);
                None
            } else {
                Some(message)
            }
        };
        let packet = self.answer(&mut collect)?;
        if let Some(event) = stream_event {
            self.unregister(event)?;
        }
        match packet.kind {
            PacketType::CmdResponse => Ok(packet.message),
            PacketType::CmdUnknown => Err(Error::UnknownCommand(command.to_string())),
            other => Err(Error::Unexpected(other)),
        }
    }

    fn event_request(&mut self, kind: PacketType, event: &str) -> Result<()> {
        self.send(&Packet {
            kind,
            name: Some(event.to_string()),
            message: Message::new(),
        })?;
        let packet = self.answer(&mut |_, message| Some(message))?;
        match packet.kind {
            PacketType::EventConfirm => Ok(()),
            PacketType::EventUnknown => Err(Error::UnknownEvent(event.to_string())),
            other => Err(Error::Unexpected(other)),
        }
    }

    /// Asks charon to send `event` on this connection.
    pub fn register(&mut self, event: &str) -> Result<()> {
        self.event_request(PacketType::EventRegister, event)
    }

    pub fn unregister(&mut self, event: &str) -> Result<()> {
        self.event_request(PacketType::EventUnregister, event)
    }

    /// The next registered event: a queued one, else one read from the socket (waits up to
    /// the timeout set with [`Client::set_timeout`]; `Ok(None)` when it passed).
    pub fn next_event(&mut self) -> Result<Option<Event>> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Some(event));
        }
        match read_packet(&mut self.stream) {
            Ok(packet) if packet.kind == PacketType::Event => Ok(Some(Event {
                name: packet.name.unwrap_or_default(),
                message: packet.message,
            })),
            Ok(packet) => Err(Error::Unexpected(packet.kind)),
            Err(Error::Io(e)) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// charon's daemon name and version.
    pub fn version(&mut self) -> Result<Message> {
        self.call("version", Message::new())
    }

    /// `load-conn`: one connection (a section named after it).
    pub fn load_conn(&mut self, name: &str, conn: Message) -> Result<()> {
        let answer = self.call("load-conn", Message::new().section(name, conn))?;
        check("load-conn", answer).map(drop)
    }

    pub fn unload_conn(&mut self, name: &str) -> Result<()> {
        let answer = self.call("unload-conn", Message::new().kv("name", name))?;
        check("unload-conn", answer).map(drop)
    }

    /// `load-shared`: a shared secret (`type` IKE, `data`, `owners`), replaced by `id`.
    pub fn load_shared(&mut self, id: &str, kind: &str, data: &str, owners: &[String]) -> Result<()> {
        let message = Message::new()
            .kv("id", id)
            .kv("type", kind)
            .kv("data", data)
            .list("owners", owners);
        let answer = self.call("load-shared", message)?;
        check("load-shared", answer).map(drop)
    }

    /// `initiate` a CHILD SA (and its IKE SA). `timeout_ms` 0 waits for the result; a
    /// negative one returns at once.
    pub fn initiate(&mut self, ike: &str, child: &str, timeout_ms: i64) -> Result<()> {
        let message = Message::new()
            .kv("child", child)
            .kv("ike", ike)
            .kv("timeout", timeout_ms)
            .kv("init-limits", "no");
        let answer = self.call("initiate", message)?;
        check("initiate", answer).map(drop)
    }

    /// `terminate` the IKE SAs of a connection (`force`: without waiting for the peer).
    pub fn terminate_ike(&mut self, ike: &str, timeout_ms: i64) -> Result<()> {
        let message = Message::new()
            .kv("ike", ike)
            .kv("force", "yes")
            .kv("timeout", timeout_ms);
        let answer = self.call("terminate", message)?;
        check("terminate", answer).map(drop)
    }

    /// `list-sas`: one message per IKE SA (a section named after its connection).
    pub fn list_sas(&mut self, ike: Option<&str>) -> Result<Vec<Message>> {
        let mut request = Message::new().kv("noblock", "yes");
        if let Some(ike) = ike {
            request = request.kv("ike", ike);
        }
        let mut sas = Vec::new();
        let answer = self.call_streamed("list-sas", Some("list-sa"), request, &mut |m| sas.push(m))?;
        check("list-sas", answer)?;
        Ok(sas)
    }

    /// Names of the loaded connections.
    pub fn get_conns(&mut self) -> Result<Vec<String>> {
        let answer = self.call("get-conns", Message::new())?;
        Ok(answer.strings("conns"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    /// The example of the protocol specification, byte for byte.
    #[test]
    fn encodes_the_specification_example() {
        let message = Message::new().kv("key1", "value1").section(
            "section1",
            Message::new()
                .section("sub-section", Message::new().kv("key2", "value2"))
                .list("list1", ["item1", "item2"]),
        );
        let mut expected = vec![3, 4];
        expected.extend(b"key1");
        expected.extend([0, 6]);
        expected.extend(b"value1");
        expected.extend([1, 8]);
        expected.extend(b"section1");
        expected.extend([1, 11]);
        expected.extend(b"sub-section");
        expected.extend([3, 4]);
        expected.extend(b"key2");
        expected.extend([0, 6]);
        expected.extend(b"value2");
        expected.push(2);
        expected.extend([4, 5]);
        expected.extend(b"list1");
        expected.extend([5, 0, 5]);
        expected.extend(b"item1");
        expected.extend([5, 0, 5]);
        expected.extend(b"item2");
        expected.extend([6, 2]);
        assert_eq!(message.encode().unwrap(), expected);
        assert_eq!(Message::decode(&expected).unwrap(), message);
    }

    #[test]
    fn packets_carry_length_type_and_name() {
        let packet = Packet {
            kind: PacketType::CmdRequest,
            name: Some("version".into()),
            message: Message::new(),
        };
        assert_eq!(
            packet.encode().unwrap(),
            [0, 0, 0, 9, 0, 7, b'v', b'e', b'r', b's', b'i', b'o', b'n']
        );
        let response = Packet {
            kind: PacketType::CmdResponse,
            name: None,
            message: Message::new().kv("a", "b"),
        };
        let bytes = response.encode().unwrap();
        assert_eq!(bytes, [0, 0, 0, 7, 1, 3, 1, b'a', 0, 1, b'b']);
        assert_eq!(Packet::decode(&bytes[4..]).unwrap(), response);
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        for bad in [
            &[2u8][..],                // SECTION_END at top level
            &[1, 1, b's'],             // section never closed
            &[3, 4, b'k'],             // truncated name
            &[3, 1, b'k', 0, 9, b'v'], // truncated value
            &[4, 1, b'l', 3],          // key/value inside a list
            &[9],                      // unknown element
        ] {
            assert!(Message::decode(bad).is_err(), "{bad:?}");
        }
        assert!(Packet::decode(&[42]).is_err());
        assert!(Packet::decode(&[]).is_err());
        let long = "x".repeat(256);
        assert!(Message::new().kv(&long, "v").encode().is_err());
        assert!(Message::new().kv("k", "v".repeat(70_000)).encode().is_err());
    }

    /// A fake charon on a socket pair: events arriving before a command's answer are queued,
    /// list-sas collects its streamed events, failures carry charon's errmsg.
    #[test]
    fn client_talks_to_a_fake_charon() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let server = thread::spawn(move || {
            let send = |stream: &mut UnixStream, kind, name: Option<&str>, message| {
                let packet = Packet {
                    kind,
                    name: name.map(str::to_string),
                    message,
                };
                stream.write_all(&packet.encode().unwrap()).unwrap();
            };
            // register ike-updown
            let p = read_packet(&mut theirs).unwrap();
            assert_eq!(
                (p.kind, p.name.as_deref()),
                (PacketType::EventRegister, Some("ike-updown"))
            );
            send(&mut theirs, PacketType::EventConfirm, None, Message::new());
            // list-sas: register list-sa, command, two events + an unrelated one, answer, unregister
            let p = read_packet(&mut theirs).unwrap();
            assert_eq!(p.name.as_deref(), Some("list-sa"));
            send(&mut theirs, PacketType::EventConfirm, None, Message::new());
            let p = read_packet(&mut theirs).unwrap();
            assert_eq!((p.kind, p.name.as_deref()), (PacketType::CmdRequest, Some("list-sas")));
            assert_eq!(p.message.str("noblock").as_deref(), Some("yes"));
            for name in ["a", "b"] {
                let sa = Message::new().section(name, Message::new().kv("state", "ESTABLISHED"));
                send(&mut theirs, PacketType::Event, Some("list-sa"), sa);
            }
            send(
                &mut theirs,
                PacketType::Event,
                Some("ike-updown"),
                Message::new().kv("up", "yes"),
            );
            send(&mut theirs, PacketType::CmdResponse, None, Message::new());
            let p = read_packet(&mut theirs).unwrap();
            assert_eq!(p.kind, PacketType::EventUnregister);
            send(&mut theirs, PacketType::EventConfirm, None, Message::new());
            // load-conn fails
            let p = read_packet(&mut theirs).unwrap();
            assert_eq!(p.name.as_deref(), Some("load-conn"));
            assert!(p.message.sub("c1").is_some());
            let fail = Message::new().kv("success", "no").kv("errmsg", "bad proposal");
            send(&mut theirs, PacketType::CmdResponse, None, fail);
            // unknown command
            let _ = read_packet(&mut theirs).unwrap();
            send(&mut theirs, PacketType::CmdUnknown, None, Message::new());
        });
        let mut client = Client::from_stream(ours);
        client.set_timeout(Some(Duration::from_secs(5))).unwrap();
        client.register("ike-updown").unwrap();
        let sas = client.list_sas(None).unwrap();
        let names: Vec<_> = sas
            .iter()
            .flat_map(|m| m.sections().map(|(n, _)| n.to_string()))
            .collect();
        assert_eq!(names, ["a", "b"]);
        let event = client.next_event().unwrap().unwrap();
        assert_eq!(
            (event.name.as_str(), event.message.str("up")),
            ("ike-updown", Some("yes".into()))
        );
        match client.load_conn("c1", Message::new().kv("version", 2)) {
            Err(Error::Failed { message, .. }) => assert_eq!(message, "bad proposal"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            client.call("nonsense", Message::new()),
            Err(Error::UnknownCommand(_))
        ));
        server.join().unwrap();
    }
}
