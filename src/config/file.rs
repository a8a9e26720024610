//! The configuration file as serde sees it.
//!
//! Every struct denies unknown keys, and every key is optional here: whether a
//! key is required, and what its value may be, is `validate.rs`'s business,
//! so that one bad key never hides the problems of the others. Only the TOML
//! type of each value (and the spelling of enum values and durations) is
//! checked by serde.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use super::document::{KeyPath, Segment};
use super::duration;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct File {
    pub global: Option<Global>,
    pub listener: Vec<Listener>,
    pub route: Vec<Route>,
    pub pools: BTreeMap<String, Pool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [global] table")]
pub(super) struct Global {
    pub certs: Option<String>,
    pub default_cert: Option<String>,
    pub access_log: Option<String>,
    pub log_format: Option<LogFormat>,
    pub admin: Option<String>,
    pub admin_token: Option<String>,
    pub state_file: Option<String>,
    #[serde(deserialize_with = "int")]
    pub workers: Option<i64>,
    pub drain_delay: Option<Dur>,
    pub drain_timeout: Option<Dur>,
    pub resolve_interval: Option<Dur>,
    pub limits: Option<Limits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [global.limits] table")]
pub(super) struct Limits {
    #[serde(deserialize_with = "int")]
    pub max_connections: Option<i64>,
    pub header_read_timeout: Option<Dur>,
    pub idle_timeout: Option<Dur>,
    #[serde(deserialize_with = "int")]
    pub max_header_bytes: Option<i64>,
    #[serde(deserialize_with = "int")]
    pub max_body_bytes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [[listener]] table")]
pub(super) struct Listener {
    pub bind: Option<String>,
    pub tls: Option<bool>,
    pub proxy_protocol: Option<ProxyProtocol>,
    pub proxy_from: Option<Vec<String>>,
    pub hsts: Option<String>,
    pub health_path: Option<String>,
    pub client_ca: Option<String>,
    pub client_auth: Option<ClientAuth>,
    pub redirect_https: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [[route]] table")]
pub(super) struct Route {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub strip_prefix: Option<bool>,
    pub pool: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [pools.NAME] table")]
pub(super) struct Pool {
    pub balance: Option<Balance>,
    pub connect_timeout: Option<Dur>,
    pub response_timeout: Option<Dur>,
    #[serde(deserialize_with = "int")]
    pub retries: Option<i64>,
    pub affinity: Option<Affinity>,
    pub health: Option<Health>,
    pub servers: Vec<Server>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "an inline table such as { mode = \"cookie\" }"
)]
pub(super) struct Affinity {
    pub mode: Option<AffinityMode>,
    pub cookie: Option<String>,
    pub path_param: Option<String>,
    pub header: Option<String>,
    pub ttl: Option<Dur>,
    #[serde(deserialize_with = "int")]
    pub max_entries: Option<i64>,
    pub failback: Option<bool>,
    pub drain_quiet: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "an inline table such as { path = \"/health\" }"
)]
pub(super) struct Health {
    pub path: Option<String>,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    #[serde(deserialize_with = "int")]
    pub rise: Option<i64>,
    #[serde(deserialize_with = "int")]
    pub fall: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a [[pools.NAME.servers]] table"
)]
pub(super) struct Server {
    pub name: Option<String>,
    pub addr: Option<String>,
    #[serde(deserialize_with = "int")]
    pub weight: Option<i64>,
    pub route: Option<String>,
    pub backup: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum LogFormat {
    Combined,
    VhostCombined,
    CombinedPlus,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ProxyProtocol {
    Off,
    V1,
    V2,
    Any,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ClientAuth {
    Optional,
    Required,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Balance {
    RoundRobin,
    LeastConn,
    Random2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum AffinityMode {
    None,
    Cookie,
    SessionSuffix,
    Learn,
    ClientIp,
    Header,
}

/// A duration written as a string (`"10s"`), see `duration.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurVisitor;
        impl Visitor<'_> for DurVisitor {
            type Value = Dur;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(duration::EXAMPLE)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Dur, E> {
                duration::parse(text).map(Dur).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(DurVisitor)
    }
}

/// An integer, with a message that says so (serde's says "i64").
fn int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    struct IntVisitor;
    impl Visitor<'_> for IntVisitor {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a whole number")
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<i64, E> {
            Ok(n)
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<i64, E> {
            i64::try_from(n).map_err(|_| E::custom(format!("{n} is too large")))
        }
    }
    deserializer.deserialize_i64(IntVisitor).map(Some)
}

/// The keys a table at `path` may hold, for "unknown key" messages; `None`
/// when `path` is not a table of the file's schema.
pub(super) fn keys_at(path: &KeyPath) -> Option<&'static [&'static str]> {
    use Segment::{Index, Key};
    let keys = match path.segments() {
        [] => fields::<File>(),
        [Key(g)] if g == "global" => fields::<Global>(),
        [Key(g), Key(l)] if g == "global" && l == "limits" => fields::<Limits>(),
        [Key(l), Index(_)] if l == "listener" => fields::<Listener>(),
        [Key(r), Index(_)] if r == "route" => fields::<Route>(),
        [Key(p), Key(_)] if p == "pools" => fields::<Pool>(),
        [Key(p), Key(_), Key(a)] if p == "pools" && a == "affinity" => fields::<Affinity>(),
        [Key(p), Key(_), Key(h)] if p == "pools" && h == "health" => fields::<Health>(),
        [Key(p), Key(_), Key(s), Index(_)] if p == "pools" && s == "servers" => fields::<Server>(),
        _ => return None,
    };
    Some(keys)
}

/// The field names of a derived `Deserialize` struct, as serde passes them
/// to `deserialize_struct`: one list, so "expected one of" never drifts from
/// the structs above.
fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    // The deserializer always fails; all it does is catch the field names.
    let _ = T::deserialize(FieldNames(&mut names));
    names
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only struct field names are collected"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names collected"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn field_names_follow_the_structs() {
        assert_eq!(
            fields::<Server>(),
            &["name", "addr", "weight", "route", "backup"]
        );
        assert_eq!(fields::<File>(), &["global", "listener", "route", "pools"]);
    }

    #[test]
    fn keys_by_path() {
        let server = KeyPath::root()
            .key("pools")
            .key("web")
            .key("servers")
            .index(3);
        assert_eq!(keys_at(&server), Some(fields::<Server>()));
        let limits = KeyPath::root().key("global").key("limits");
        assert_eq!(keys_at(&limits), Some(fields::<Limits>()));
        assert_eq!(keys_at(&KeyPath::root().key("nope")), None);
    }
}
