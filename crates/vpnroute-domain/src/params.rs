//! Typed access to request parameters. The wire layer decodes the request into name/value
//! pairs; actions read them through [`Params`], which turns absent, malformed or out-of-range
//! values into Alibaba's errors (`MissingParameter`, `InvalidParameter`, …).

use crate::error::{ApiError, Result};

/// Typed getters over the decoded name/value pairs of a request.
pub struct Params<'a> {
    src: &'a [(String, String)],
}

impl<'a> Params<'a> {
    pub fn new(src: &'a [(String, String)]) -> Self {
        Params { src }
    }

    /// The raw value; an empty string counts as absent, as on Alibaba's side.
    pub fn opt_str(&self, name: &str) -> Option<&'a str> {
        self.src
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn str(&self, name: &str) -> Result<&'a str> {
        self.opt_str(name).ok_or_else(|| ApiError::missing_parameter(name))
    }

    /// Booleans arrive as `true`/`false` in any case (Python SDKs send `True`).
    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>> {
        match self.opt_str(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::invalid_parameter(name)),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool> {
        self.opt_bool(name)?.ok_or_else(|| ApiError::missing_parameter(name))
    }

    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool> {
        Ok(self.opt_bool(name)?.unwrap_or(default))
    }

    pub fn opt_i64(&self, name: &str) -> Result<Option<i64>> {
        match self.opt_str(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::invalid_parameter(name)),
        }
    }

    /// An integer within `[min, max]`, `InvalidParameter` otherwise.
    pub fn opt_int_in(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>> {
        match self.opt_i64(name)? {
            Some(v) if v < min || v > max => Err(ApiError::invalid_parameter(name)),
            other => Ok(other),
        }
    }

    /// Paging: `PageNumber` ≥ 1 (default 1) and `PageSize` 1..=50 (default 10).
    pub fn paging(&self) -> Result<Paging> {
        let number = self.opt_int_in("PageNumber", 1, i32::MAX as i64)?.unwrap_or(1);
        let size = self.opt_int_in("PageSize", 1, 50)?.unwrap_or(10);
        Ok(Paging {
            number: number as u32,
            size: size as u32,
        })
    }

    /// `Tag.N.Key` / `Tag.N.Value` pairs (N from 1), as Alibaba flattens lists.
    pub fn tags(&self, list: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for n in 1..=20 {
            let key = self.opt_str(&format!("{list}.{n}.Key"));
            let value = self.opt_str(&format!("{list}.{n}.Value")).unwrap_or("");
            match key {
                Some(k) => out.push((k.to_string(), value.to_string())),
                None => continue,
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub number: u32,
    pub size: u32,
}

impl Paging {
    pub fn offset(&self) -> u64 {
        (self.number as u64 - 1) * self.size as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn booleans_in_any_case() {
        let src = p(&[("A", "True"), ("B", "false"), ("C", "yes")]);
        let ps = Params::new(&src);
        assert_eq!(ps.opt_bool("A").unwrap(), Some(true));
        assert_eq!(ps.opt_bool("B").unwrap(), Some(false));
        assert_eq!(ps.opt_bool("C").unwrap_err().code, "InvalidParameter");
        assert_eq!(ps.bool("D").unwrap_err().code, "MissingParameter");
    }

    #[test]
    fn paging_bounds() {
        let src = p(&[("PageSize", "51")]);
        assert_eq!(Params::new(&src).paging().unwrap_err().code, "InvalidParameter");
        let src = p(&[("PageSize", "50"), ("PageNumber", "3")]);
        let pg = Params::new(&src).paging().unwrap();
        assert_eq!(pg.offset(), 100);
        let src = p(&[]);
        assert_eq!(Params::new(&src).paging().unwrap(), Paging { number: 1, size: 10 });
    }

    #[test]
    fn integers_take_a_sign_and_leading_zeros() {
        let src = p(&[("PageSize", "+5"), ("PageNumber", "05")]);
        assert_eq!(Params::new(&src).paging().unwrap(), Paging { number: 5, size: 5 });
        for bad in ["5.0", "0x5", "5a", "--5", "+"] {
            let src = p(&[("PageSize", bad)]);
            assert_eq!(
                Params::new(&src).paging().unwrap_err().code,
                "InvalidParameter",
                "{bad}"
            );
        }
    }

    #[test]
    fn tags_are_collected() {
        let src = p(&[("Tag.1.Key", "env"), ("Tag.1.Value", "prod"), ("Tag.3.Key", "x")]);
        let t = Params::new(&src).tags("Tag").unwrap();
        assert_eq!(t, vec![("env".into(), "prod".into()), ("x".into(), "".into())]);
    }
}
