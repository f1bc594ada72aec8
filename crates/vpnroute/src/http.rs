//! HTTP: [`serve`] (wiring the store, nonce log and [`vpnroute_app::state::App`] at start, and spawning its background tasks), the
//! Alibaba RPC endpoint on `/` (GET and POST), the introspection API under `/_vpnroute/`
//! (outside the Action namespace) and Prometheus metrics on `/metrics`.
//!
//! An RPC request: `rpc` reads the body ([`MAX_BODY`]), parses it with [`vpnroute_wire`],
//! `classify` checks method, version and Action, then the handler runs in a read
//! transaction (inline; `admit` authenticates with [`crate::auth`], throttles and records
//! the nonce; on PostgreSQL `read_in_one_trip` sends the nonce with the read's generation
//! query) or, authenticated first on a read snapshot, through the group-commit
//! [`vpnroute_app::writer`] (`run_write` re-checks the key, throttles and records the nonce).
//! Connections, timeouts and shutdown: [`crate::limits`]; the operator endpoints' token:
//! [`crate::operator`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::Router;
use serde_json::{json, Value};
use tracing::{info, warn};
use vpnroute_domain::ApiError;
use vpnroute_store::{Durability, ReadTx};
use vpnroute_wire::{Format, RawRequest};

use crate::cli::{LogFormat, ServeArgs, SyncMode};
use vpnroute_app::dispatch::{self, Handler};
use vpnroute_app::ram;
use vpnroute_app::reply::Reply;
use vpnroute_app::state::{default_regions, now_ms, App, Config, Ctx, OpCtx, Region, SharedApp};

pub const HOST_ID: &str = "vpc.aliyuncs.com";

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VPNROUTE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let durability = match args.sync {
        SyncMode::Process => Durability::Process,
        SyncMode::Full => Durability::Full,
    };
    let backend = crate::backend::open(
        args.store.as_ref(),
        &args.data_dir,
        durability,
        crate::auth::WINDOW_MS,
        now_ms(),
        args.throttle_rps,
    )?;
    let store = backend.store;
    crate::admin::ensure_root_account(&*store, true)?;
    let operator = crate::operator::resolve(args.operator_token.as_deref(), &args.data_dir)?;
    let operator = Operator {
        token: Arc::new(crate::operator::OperatorToken::new(&operator)),
        metrics_public: args.metrics_public,
    };
    let regions = if args.regions.is_empty() {
        default_regions()
    } else {
        args.regions
            .iter()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .map(|id| Region {
                local_name: id.clone(),
                id,
            })
            .collect()
    };
    let config = Config {
        regions,
        task_duration: args.task_duration,
        on_busy: args.on_busy,
        quotas: args.quotas(),
        throttle_rps: args.throttle_rps,
        sts_key: crate::sts_key::sts_key(&*store, &args.data_dir)?,
    };
    let data_plane: Arc<dyn vpnroute_dataplane::DataPlane> = match args.dataplane {
        crate::cli::DataPlaneKind::Sim => Arc::new(vpnroute_dataplane_sim::SimDataPlane::new()),
        crate::cli::DataPlaneKind::Linux => {
            let linux = vpnroute_dataplane_linux::LinuxDataPlane::new(vpnroute_dataplane_linux::LinuxConfig {
                prefix: args.netns_prefix.clone(),
                tunnels: args.tunnels.unwrap_or(vpnroute_dataplane_linux::TunnelKind::Ipsec),
                policy: args.policy_routes,
                ..Default::default()
            })
            .map_err(|e| anyhow::anyhow!("--dataplane linux: {e}"))?;
            info!(prefix = %args.netns_prefix, "Linux data plane");
            Arc::new(linux)
        }
    };
    let owner = reconciler_owner(&args.data_dir);
    info!(store = %store.location(), reconciler_owner = %owner, "store open");
    let app = App::start_with(store, backend.nonces, backend.rate_limiter, config, data_plane, owner)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        let addr: SocketAddr = listener.local_addr()?;
        println!("vpnroute listening on http://{addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        info!(%addr, data_dir = %args.data_dir.display(), task_duration = %app.config.task_duration.as_text(), "vpnroute listening");
        tokio::spawn(app.reconciler.clone().run());
        tokio::spawn(vpnroute_app::tasks::run_janitor(app.clone()));
        let limits = args.limits();
        info!(max_connections = limits.max_connections, "connection limits");
        crate::limits::serve(listener, router(app, operator), limits, crate::limits::shutdown_signal()).await?;
        info!("drained; exiting");
        Ok(())
    })
}

/// How the operator endpoints are guarded (see [`crate::operator`]).
pub struct Operator {
    pub token: Arc<crate::operator::OperatorToken>,
    /// `/metrics` without the token.
    pub metrics_public: bool,
}

pub fn router(app: SharedApp, operator: Operator) -> Router {
    let guard = || axum::middleware::from_fn_with_state(operator.token.clone(), crate::operator::require_token);
    let introspection = Router::new()
        .route("/_vpnroute/health", get(|| async { "ok" }))
        .route("/_vpnroute/operations", get(introspect_operations))
        .route("/_vpnroute/gateways", get(introspect_gateways))
        .route("/_vpnroute/gateways/{id}", get(introspect_gateway))
        .route("/_vpnroute/gateways/{id}/explain", get(introspect_explain))
        .route("/_vpnroute/gateways/{id}/dataplane", get(introspect_dataplane))
        .route("/_vpnroute/gateways/{id}/advance", post(introspect_advance))
        .route(
            "/_vpnroute/connections/{id}/tunnel",
            put(introspect_tunnel).post(introspect_tunnel),
        )
        .route_layer(guard());
    let mut metrics_route = Router::new().route("/metrics", get(metrics));
    if !operator.metrics_public {
        metrics_route = metrics_route.route_layer(guard());
    }
    Router::new()
        .route("/", any(rpc))
        .merge(introspection)
        .merge(metrics_route)
        .fallback(unknown_path)
        .with_state(app)
}

/// Paths outside `/` and the introspection API: Alibaba's error body, 404.
async fn unknown_path() -> Response {
    let request_id = vpnroute_domain::ids::new_request_id();
    let answer = error_answer(&ApiError::INVALID_ACTION, Format::Json, &request_id);
    let mut resp = (
        StatusCode::NOT_FOUND,
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static(answer.content_type),
        )],
        answer.body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-acs-request-id", v);
    }
    resp
}

/// The outcome of one RPC call, ready to encode.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
    retry_after: bool,
}

/// Largest request body accepted (form-encoded parameters); beyond it, Alibaba's error body.
const MAX_BODY: usize = 4 * 1024 * 1024;

async fn rpc(
    State(app): State<SharedApp>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    deadline: Option<axum::Extension<crate::limits::RequestDeadline>>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<SocketAddr>>>,
    body: axum::body::Body,
) -> Response {
    let request_id = vpnroute_domain::ids::new_request_id();
    // The TCP peer (policy key `acs:SourceIp`); absent when the router is driven without a
    // listener (in-process tests).
    let source_ip = peer.map(|axum::Extension(axum::extract::ConnectInfo(addr))| addr.ip());
    let read = axum::body::to_bytes(body, MAX_BODY);
    let read = match deadline {
        Some(axum::Extension(crate::limits::RequestDeadline(at))) => tokio::time::timeout_at(at, read)
            .await
            .unwrap_or_else(|_| Err(axum::Error::new("body timeout"))),
        None => read.await,
    };
    let body: Bytes = match read {
        Ok(b) => b,
        Err(_) => {
            let e = ApiError::invalid_parameter_msg("The request body is too large or could not be read.");
            return into_response(error_answer(&e, Format::Json, &request_id), &request_id);
        }
    };
    app.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let header_vec: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let raw = RawRequest {
        method: method.as_str(),
        path: uri.path(),
        raw_query: uri.query().unwrap_or(""),
        headers: &header_vec,
        body: &body,
    };
    let parsed = match vpnroute_wire::parse(&raw) {
        Ok(p) => p,
        Err(e) => {
            let a = e.to_alibaba();
            app.metrics.errors.fetch_add(1, Ordering::Relaxed);
            let answer = error_answer(
                &ApiError::new(a.code, a.message, a.http_status),
                sniff_format(&raw),
                &request_id,
            );
            return into_response(answer, &request_id);
        }
    };
    let (action, format) = (parsed.action.clone().unwrap_or_default(), parsed.format);
    let host = host_id(parsed.version.as_deref());
    let answer = match classify(&raw, &parsed) {
        Err(e) => finish(&app, Err(e), &action, format, host, &request_id, started),
        // Reads run inline on the runtime: a short read transaction on a warm cache.
        Ok(Handler::Read(f)) => {
            let one_trip = match app.nonce_log.reads() {
                Some(reads) => read_in_one_trip(&app, reads, &raw, &parsed, source_ip, f, &request_id).await,
                None => None,
            };
            let result = match one_trip {
                Some(result) => result,
                None => guarded(&request_id, || run_read(&app, &raw, &parsed, source_ip, f)),
            };
            finish(&app, result, &action, format, host, &request_id, started)
        }
        // Writes go to the group-commit writer, authenticated first: the signature (at a
        // cost bounded by the body and parameter caps), the timestamp and the key are
        // checked here, so junk never takes the writer's time.
        Ok(Handler::Write(f)) => {
            let now = now_ms();
            let authenticate = |tx: &dyn vpnroute_store::ReadTx| {
                crate::auth::authenticate(tx, &raw, &parsed, &app.config.sts_key, now)
            };
            // On what this process has cached when that passes (PostgreSQL: no round trip;
            // the write's transaction checks the key again); else on a read snapshot, so a
            // refusal is always decided on the committed state.
            let cached = app
                .nonce_log
                .reads()
                .and_then(|reads| reads.read_cached(authenticate))
                .and_then(Result::ok);
            match cached
                .map(Ok)
                .unwrap_or_else(|| app.store.read_fast(|tx| authenticate(tx)))
            {
                Err(e) => finish(&app, Err(e), &action, format, host, &request_id, started),
                Ok(caller) => {
                    let mut gated = WriteGate::default();
                    // Jobs of one gateway on one writer (a hint: a wrong id only loses it).
                    let gateway = parsed.params.get("VpnGatewayId").map(str::to_owned);
                    let result = vpnroute_app::writer::submit(&app, gateway, move |app, tx| {
                        run_write(app, tx, &parsed, source_ip, caller.clone(), f, &mut gated)
                    })
                    .await;
                    finish(
                        &app,
                        result.map(Reply::Value),
                        &action,
                        format,
                        host,
                        &request_id,
                        started,
                    )
                }
            }
        }
    };
    into_response(answer, &request_id)
}

/// The requested format of a request that could not be parsed: XML only when a literal
/// `Format=XML` (any case) is in the query or body, JSON otherwise.
fn sniff_format(raw: &RawRequest<'_>) -> Format {
    let has_xml = |text: &[u8]| {
        text.split(|b| *b == b'&')
            .any(|pair| pair.len() == 10 && pair.eq_ignore_ascii_case(b"Format=XML"))
    };
    if has_xml(raw.raw_query.as_bytes()) || has_xml(raw.body) {
        Format::Xml
    } else {
        Format::Json
    }
}

fn into_response(answer: Answer, request_id: &str) -> Response {
    let mut resp = (
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static(answer.content_type),
        )],
        answer.body,
    )
        .into_response();
    if answer.retry_after {
        // Python Tea raises ThrottlingException only with a positive x-acs-retry-after (ms).
        resp.headers_mut()
            .insert("x-acs-retry-after", HeaderValue::from_static("1000"));
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-acs-request-id", v);
    }
    resp
}

fn error_answer(e: &ApiError, format: Format, request_id: &str) -> Answer {
    error_answer_from(e, format, request_id, HOST_ID)
}

/// `HostId` of an API's error bodies.
fn host_id(version: Option<&str>) -> &'static str {
    match version {
        Some(ram::RAM_VERSION) => "ram.aliyuncs.com",
        Some(ram::STS_VERSION) => "sts.aliyuncs.com",
        _ => HOST_ID,
    }
}

fn error_answer_from(e: &ApiError, format: Format, request_id: &str, host: &str) -> Answer {
    let body = vpnroute_wire::ErrorBody::new(request_id, host, e.code.to_string(), e.message.to_string())
        .with_access_denied_detail(e.access_denied_detail.as_deref().cloned());
    let (content_type, text) = vpnroute_wire::encode_error(&body, format);
    Answer {
        status: e.status,
        content_type,
        body: text,
        retry_after: e.code.starts_with("Throttling"),
    }
}

/// Encode the outcome of an action and log it.
fn finish(
    app: &App,
    result: Result<Reply, ApiError>,
    action: &str,
    format: Format,
    host: &str,
    request_id: &str,
    started: std::time::Instant,
) -> Answer {
    let elapsed_us = started.elapsed().as_micros() as u64;
    match result {
        Ok(body) => {
            tracing::debug!(request_id, action, elapsed_us, "ok");
            let (content_type, text) = vpnroute_wire::encode_reply(action, request_id, &body, format);
            Answer {
                status: 200,
                content_type,
                body: text,
                retry_after: false,
            }
        }
        Err(e) => {
            app.metrics.errors.fetch_add(1, Ordering::Relaxed);
            info!(request_id, action, code = %e.code, status = e.status, elapsed_us, "error");
            error_answer_from(&e, format, request_id, host)
        }
    }
}

pub const API_VERSION: &str = "2016-04-28";

/// Protocol checks before authentication: method, Action, Version.
fn classify(raw: &RawRequest<'_>, parsed: &vpnroute_wire::ParsedRequest) -> Result<Handler, ApiError> {
    if raw.method != "GET" && raw.method != "POST" {
        return Err(ApiError::UNSUPPORTED_HTTP_METHOD);
    }
    let wire_err = |e: vpnroute_wire::WireError| {
        let a = e.to_alibaba();
        ApiError::new(a.code, a.message, a.http_status)
    };
    let action = parsed.require_action().map_err(wire_err)?;
    let version = parsed.require_version().map_err(wire_err)?;
    // One endpoint, three APIs: dispatch on (Version, Action).
    let handler = match version {
        API_VERSION => dispatch::handler(action),
        ram::RAM_VERSION => ram::ram_handler(action),
        ram::STS_VERSION => ram::sts_handler(action),
        _ => return Err(ApiError::INVALID_VERSION),
    };
    handler.ok_or(ApiError::INVALID_ACTION)
}

/// Authentication, throttling and the nonce, inside a read's transaction; yields the
/// request's context. The nonce goes to its own log (not rolled back with the transaction),
/// so a replay is refused whatever the outcome of the original request. `gated` tells
/// whether throttling and the nonce were already passed by an earlier run of the same
/// request (a read may run twice, see `Store::read_fast`); authentication is always redone,
/// on the transaction's own snapshot.
fn admit<'a>(
    app: &'a App,
    tx: &dyn ReadTx,
    raw: &RawRequest<'_>,
    parsed: &'a vpnroute_wire::ParsedRequest,
    source_ip: Option<std::net::IpAddr>,
    gated: &mut bool,
) -> Result<Ctx<'a>, ApiError> {
    let now = now_ms();
    let caller = crate::auth::authenticate(tx, raw, parsed, &app.config.sts_key, now)?;
    if !*gated {
        gate(app, &caller, parsed, now, false)?;
        *gated = true;
    }
    context(app, caller, parsed, source_ip, now)
}

/// Throttling, then the nonce (`durable`: refuse when the nonce log cannot be written, as
/// a write must not run on a nonce a restart could forget; a read may).
fn gate(
    app: &App,
    caller: &crate::auth::Caller,
    parsed: &vpnroute_wire::ParsedRequest,
    now: i64,
    durable: bool,
) -> Result<(), ApiError> {
    throttle(app, caller, parsed, now)?;
    let nonce = parsed.auth.nonce().unwrap_or_default();
    gate_nonce(app, caller, nonce, now, caller.nonce_keep_until(now), durable)
}

/// The nonce, recorded with the nonce store (refused if still remembered).
fn gate_nonce(
    app: &App,
    caller: &crate::auth::Caller,
    nonce: &str,
    now: i64,
    keep_until: i64,
    durable: bool,
) -> Result<(), ApiError> {
    if !app.nonce_log.record_signed(
        &caller.access_key_id,
        nonce,
        now,
        caller.signed_at_ms,
        keep_until,
        durable,
    )? {
        return Err(ApiError::NONCE_USED);
    }
    Ok(())
}

/// What a write request has passed, across the runs of its job.
#[derive(Default)]
struct WriteGate {
    throttled: bool,
    /// Recorded with the nonce store (not merely taken by a transaction that may not commit).
    nonce: bool,
}

fn throttle(
    app: &App,
    caller: &crate::auth::Caller,
    parsed: &vpnroute_wire::ParsedRequest,
    now: i64,
) -> Result<(), ApiError> {
    let action = parsed.action.as_deref().unwrap_or_default();
    app.throttle.check(&caller.access_key_id, action, now)
}

/// The call's context, once its caller passed the gate. A VPC operation is authorized here
/// (RAM), before its handler reveals anything; RAM and STS calls authorize inside their
/// handlers, on the entities they name.
fn context<'a>(
    app: &'a App,
    caller: crate::auth::Caller,
    parsed: &'a vpnroute_wire::ParsedRequest,
    source_ip: Option<std::net::IpAddr>,
    now: i64,
) -> Result<Ctx<'a>, ApiError> {
    let ctx = Ctx {
        op: OpCtx::new(app, caller.account_id.into(), now),
        action: parsed.action.as_deref().unwrap_or_default(),
        params: parsed.params.as_slice(),
        identity: caller.identity,
        source_ip,
    };
    if parsed.version.as_deref() == Some(API_VERSION) {
        ram::enforce_vpc(&ctx)?;
    }
    Ok(ctx)
}

/// A read: from the read cache when it holds everything the action needs, else on a
/// snapshot.
fn run_read(
    app: &App,
    raw: &RawRequest<'_>,
    parsed: &vpnroute_wire::ParsedRequest,
    source_ip: Option<std::net::IpAddr>,
    f: dispatch::ReadFn,
) -> Result<Reply, ApiError> {
    let mut gated = false;
    app.store
        .read_fast(|tx| f(&admit(app, tx, raw, parsed, source_ip, &mut gated)?, tx))
}

/// A read on a store whose nonces share its database (PostgreSQL), waiting for the database
/// once and without blocking a thread for it ([`vpnroute_store::NonceReads`]): the caller is
/// authenticated first on what this process has cached at the newest generation it knows of
/// (no database) and throttled; then its nonce goes out in the statement that reads the
/// commit generation (awaited); then the read runs at that generation, authenticating again
/// on that state as every read does (`auth::confirm`: the key's state, without computing
/// the signature again). `None` (nothing counted, nothing recorded) when the
/// first authentication did not pass on cached results alone — a result not cached, or an
/// authentication error: [`run_read`] then decides on the read's own snapshot, so a request
/// failing authentication records no nonce. Only a key disabled (or a session's role
/// deleted) by a commit this process had not seen when the request arrived passes the first
/// check and fails the second: its nonce is recorded (docs/compatibility.md §1.2, step 8).
async fn read_in_one_trip(
    app: &App,
    reads: &dyn vpnroute_store::NonceReads,
    raw: &RawRequest<'_>,
    parsed: &vpnroute_wire::ParsedRequest,
    source_ip: Option<std::net::IpAddr>,
    f: dispatch::ReadFn,
    request_id: &str,
) -> Option<Result<Reply, ApiError>> {
    let now = now_ms();
    let sts_key = &app.config.sts_key;
    let first = guarded(request_id, || {
        Ok(reads
            .read_cached(|tx| crate::auth::authenticate_keyed(tx, raw, parsed, sts_key, now))
            .and_then(Result::ok))
    });
    let (caller, verified) = match first {
        Ok(first) => first?,
        Err(e) => return Some(Err(e)),
    };
    // From here on the request is counted: no second path.
    if let Err(e) = throttle(app, &caller, parsed, now) {
        return Some(Err(e));
    }
    let recorded = reads.record_for_read(&vpnroute_store::ReadNonce {
        access_key_id: &caller.access_key_id,
        nonce: parsed.auth.nonce().unwrap_or_default(),
        now_ms: now,
        keep_until_ms: caller.nonce_keep_until(now),
    });
    let generation = match recorded.await {
        Ok(Some(g)) => g,
        Ok(None) => return Some(Err(ApiError::NONCE_USED)),
        Err(e) => return Some(Err(e.into())),
    };
    Some(guarded(request_id, || {
        reads.read_at(generation, |tx| {
            let caller = crate::auth::confirm(tx, raw, parsed, sts_key, now, &caller, &verified)?;
            f(&context(app, caller, parsed, source_ip, now)?, tx)
        })
    }))
}

/// `run()`, a panic in it answered `InternalError`.
fn guarded<T>(request_id: &str, run: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
        warn!(request_id, "read handler panicked");
        Err(ApiError::INTERNAL_ERROR)
    })
}

/// A write on the writer thread, for a caller authenticated before it was queued: the key
/// is checked again in the write transaction (it may have been disabled meanwhile), then
/// throttling and the nonce.
fn run_write(
    app: &App,
    tx: &vpnroute_store::Tx<'_>,
    parsed: &vpnroute_wire::ParsedRequest,
    source_ip: Option<std::net::IpAddr>,
    mut caller: crate::auth::Caller,
    f: dispatch::WriteFn,
    gated: &mut WriteGate,
) -> Result<(Value, vpnroute_app::tasks::Effects), ApiError> {
    let now = now_ms();
    crate::auth::still_active(tx, &mut caller, parsed, &app.config.sts_key, now)?;
    // A job retried after a retryable store error has passed throttling and the nonce —
    // unless its transaction took the nonce (`WriteTx::take_nonce`): then the retry records
    // it with the nonce store (which refuses it if it was what failed).
    if !gated.throttled {
        throttle(app, &caller, parsed, now)?;
        gated.throttled = true;
    }
    if !gated.nonce {
        let nonce = parsed.auth.nonce().unwrap_or_default();
        let keep_until = caller.nonce_keep_until(now);
        if !tx.take_nonce(&caller.access_key_id, nonce, now, keep_until) {
            gate_nonce(app, &caller, nonce, now, keep_until, true)?;
            gated.nonce = true;
        }
    }
    let ctx = context(app, caller, parsed, source_ip, now)?;
    let body = dispatch::run_write(&ctx, tx, f)?;
    Ok((body, ctx.effects.take()))
}

// ------------------------------------------------------------------ introspection

async fn metrics(State(app): State<SharedApp>) -> Response {
    let app2 = app.clone();
    let versions = tokio::task::spawn_blocking(move || app2.store.read(|tx| tx.all_gateway_versions()))
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    let reconcile = app.reconciler.metrics().snapshot();
    let mut out = String::new();
    out.push_str("# HELP vpnroute_requests_total API requests received.\n# TYPE vpnroute_requests_total counter\n");
    out.push_str(&format!(
        "vpnroute_requests_total {}\n",
        app.metrics.requests.load(Ordering::Relaxed)
    ));
    out.push_str(
        "# HELP vpnroute_errors_total API requests answered with an error.\n# TYPE vpnroute_errors_total counter\n",
    );
    out.push_str(&format!(
        "vpnroute_errors_total {}\n",
        app.metrics.errors.load(Ordering::Relaxed)
    ));
    out.push_str("# HELP vpnroute_write_jobs_total Write requests handed to the store's writer (after authentication).\n# TYPE vpnroute_write_jobs_total counter\n");
    out.push_str(&format!(
        "vpnroute_write_jobs_total {}\n",
        app.metrics.write_jobs.load(Ordering::Relaxed)
    ));
    out.push_str(
        "# HELP vpnroute_tasks_applied_total Gateway versions put in force and recorded.\n# TYPE vpnroute_tasks_applied_total counter\n",
    );
    out.push_str(&format!("vpnroute_tasks_applied_total {}\n", reconcile.applied));
    out.push_str("# HELP vpnroute_reconcile_failures_total Failed reconcile attempts (data plane refused, read-back out of sync).\n# TYPE vpnroute_reconcile_failures_total counter\n");
    out.push_str(&format!("vpnroute_reconcile_failures_total {}\n", reconcile.failures));
    out.push_str("# HELP vpnroute_reconcile_drift_repairs_total Gateways found out of sync with their applied version and repaired.\n# TYPE vpnroute_reconcile_drift_repairs_total counter\n");
    out.push_str(&format!(
        "vpnroute_reconcile_drift_repairs_total {}\n",
        reconcile.drift_repairs
    ));
    out.push_str("# HELP vpnroute_reconcile_lost_claims_total Reconciles not recorded because another owner took the gateway over.\n# TYPE vpnroute_reconcile_lost_claims_total counter\n");
    out.push_str(&format!(
        "vpnroute_reconcile_lost_claims_total {}\n",
        reconcile.lost_claims
    ));
    out.push_str("# HELP vpnroute_reconcile_mirrored_total Recorded versions put into this replica's own data plane without a claim (another replica's work, or a refill after a start).\n# TYPE vpnroute_reconcile_mirrored_total counter\n");
    out.push_str(&format!("vpnroute_reconcile_mirrored_total {}\n", reconcile.mirrored));
    out.push_str("# HELP vpnroute_reconcile_store_errors_total Store calls of the reconciler that failed.\n# TYPE vpnroute_reconcile_store_errors_total counter\n");
    out.push_str(&format!(
        "vpnroute_reconcile_store_errors_total {}\n",
        reconcile.store_errors
    ));
    out.push_str("# HELP vpnroute_nonces_remembered Signature nonces remembered (last 15 minutes).\n# TYPE vpnroute_nonces_remembered gauge\n");
    out.push_str(&format!("vpnroute_nonces_remembered {}\n", app.nonce_log.remembered()));
    out.push_str("# HELP vpnroute_gateway_desired_version Version of the gateway's accepted configuration.\n# TYPE vpnroute_gateway_desired_version gauge\n");
    for (g, d, _) in &versions {
        out.push_str(&format!("vpnroute_gateway_desired_version{{gateway=\"{g}\"}} {d}\n"));
    }
    out.push_str("# HELP vpnroute_gateway_applied_version Version of the gateway's configuration in force.\n# TYPE vpnroute_gateway_applied_version gauge\n");
    for (g, _, a) in &versions {
        out.push_str(&format!("vpnroute_gateway_applied_version{{gateway=\"{g}\"}} {a}\n"));
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The reconciler's claim owner id: the host and the data directory, so that a restarted
/// server takes over the claims it held when it died (see `ReconcileStore::claim_due`).
/// Replicas sharing a PostgreSQL store must therefore differ in host or `--data-dir`: two
/// with the same id would end each other's claims at start.
fn reconciler_owner(data_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let dir = data_dir.canonicalize().unwrap_or_else(|_| data_dir.to_path_buf());
    format!("{}:{}", host.trim(), dir.display())
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn api_error_response(e: ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        json!({"Code": e.code, "Message": e.message}),
    )
}

async fn blocking<F>(app: SharedApp, f: F) -> Response
where
    F: FnOnce(&App) -> Result<Value, ApiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(move || f(&app)).await {
        Ok(Ok(v)) => json_response(StatusCode::OK, v),
        Ok(Err(e)) => api_error_response(e),
        Err(_) => api_error_response(ApiError::INTERNAL_ERROR),
    }
}

/// The operations table: every Action with its RAM action and access (for tooling and the
/// table-driven authorization tests).
async fn introspect_operations() -> Response {
    let ops: Vec<Value> = vpnroute_app::ops::OPERATIONS
        .iter()
        .map(|o| {
            let access = match o.access {
                vpnroute_app::ops::Access::Read => "Read",
                vpnroute_app::ops::Access::Write => "Write",
            };
            json!({"Action": o.name, "RamAction": o.ram_action, "Access": access})
        })
        .collect();
    json_response(StatusCode::OK, json!({ "Operations": ops }))
}

async fn introspect_gateways(State(app): State<SharedApp>) -> Response {
    blocking(app, vpnroute_app::engines::gateways_status).await
}

async fn introspect_gateway(State(app): State<SharedApp>, Path(id): Path<String>) -> Response {
    blocking(app, move |app| vpnroute_app::engines::gateway_status(app, &id)).await
}

#[derive(serde::Deserialize)]
struct ExplainQuery {
    source: std::net::Ipv4Addr,
    dest: std::net::Ipv4Addr,
}

async fn introspect_explain(
    State(app): State<SharedApp>,
    Path(id): Path<String>,
    Query(q): Query<ExplainQuery>,
) -> Response {
    blocking(app, move |app| {
        vpnroute_app::engines::explain(app, &id, q.source, q.dest)
    })
    .await
}

async fn introspect_dataplane(State(app): State<SharedApp>, Path(id): Path<String>) -> Response {
    blocking(app, move |app| vpnroute_app::engines::data_plane_status(app, &id)).await
}

async fn introspect_advance(State(app): State<SharedApp>, Path(id): Path<String>) -> Response {
    blocking(app, move |app| vpnroute_app::tasks::advance(app, &id)).await
}

#[derive(serde::Deserialize)]
struct TunnelQuery {
    state: String,
    /// One tunnel of a dual-tunnel connection (both when absent).
    tunnel: Option<String>,
}

async fn introspect_tunnel(
    State(app): State<SharedApp>,
    Path(id): Path<String>,
    Query(q): Query<TunnelQuery>,
) -> Response {
    blocking(app, move |app| {
        let up = match q.state.as_str() {
            "up" => true,
            "down" => false,
            _ => return Err(ApiError::invalid_parameter("state")),
        };
        vpnroute_app::engines::set_tunnel(&*app.store, &id, q.tunnel.as_deref(), up)?;
        app.reconciler.wake();
        Ok(json!({"VpnConnectionId": id, "Tunnel": q.state, "TunnelId": q.tunnel.unwrap_or_default()}))
    })
    .await
}
