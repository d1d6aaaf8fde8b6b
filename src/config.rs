//! The configuration: a TOML file (`--config FILE`) overlaid by `TWOFOLD_*` environment variables, read and
//! validated once at start into a typed [`Config`] that is passed around by value. Every error says what is wrong
//! and how to fix it, because the person reading it is an operator at a terminal.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::sms::{SmsConfig, SmsGatewayConfig};

const ENV_PREFIX: &str = "TWOFOLD_";

/// The keys a config file or the environment may set, and their defaults. Durations are read by serde
/// (`humantime-serde`: "500ms", "30s", "30m", "12h", "90d"); their ranges are checked in [`validate`].
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    database_url: String,
    database_pool_size: u32,
    #[serde(with = "humantime_serde")]
    database_timeout: Duration,
    public_url: String,
    issuer: String,
    allow_registration: bool,
    secret_key_file: Option<PathBuf>,
    #[serde(deserialize_with = "list")]
    trusted_proxies: Vec<String>,
    #[serde(with = "humantime_serde")]
    session_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    session_idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    session_cache: Duration,
    log: String,
    log_format: String,
    #[serde(with = "humantime_serde")]
    audit_retention: Duration,
    #[serde(with = "humantime_serde")]
    header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    body_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    keep_alive_timeout: Duration,
    max_connections: usize,
    sms: Option<RawSms>,
}

/// The `[sms]` section as written, one variant per gateway, so that a gateway's settings cannot be given to another
/// (`from` for the HTTP gateway is an unknown key, not an ignored one). No `Debug`: it holds gateway credentials.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "gateway", rename_all = "lowercase", deny_unknown_fields)]
enum RawSms {
    Http {
        url: String,
        token: Option<String>,
        #[serde(default, with = "humantime_serde")]
        timeout: Option<Duration>,
        #[serde(default, deserialize_with = "budget")]
        budget_per_hour: Option<i64>,
    },
    Twilio {
        account_sid: String,
        auth_token: String,
        from: String,
        base_url: Option<String>,
        #[serde(default, with = "humantime_serde")]
        timeout: Option<Duration>,
        #[serde(default, deserialize_with = "budget")]
        budget_per_hour: Option<i64>,
    },
    Console {
        #[serde(default, with = "humantime_serde")]
        timeout: Option<Duration>,
        #[serde(default, deserialize_with = "budget")]
        budget_per_hour: Option<i64>,
    },
}

/// A list as a file writes it (`["10.0.0.5", "10.0.0.6"]`) or as an environment variable does (`10.0.0.5,10.0.0.6`).
fn list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Items(Vec<String>),
        Text(String),
    }
    Ok(match List::deserialize(deserializer)? {
        List::Items(items) => items,
        List::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// `[sms] budget_per_hour` as a number or as text. serde reads an internally tagged enum through its own buffer, out
/// of reach of figment's lossy reading, so the text an environment variable gives is parsed here.
fn budget<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Budget {
        Number(i64),
        Text(String),
    }
    match Option::<Budget>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Budget::Number(budget)) => Ok(Some(budget)),
        Some(Budget::Text(text)) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::invalid_type(serde::de::Unexpected::Str(&text), &"i64")),
    }
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://twofold.db".into(),
            database_pool_size: DEFAULT_POOL_SIZE,
            database_timeout: Duration::from_secs(5),
            public_url: "http://127.0.0.1:8080".into(),
            issuer: "Twofold".into(),
            allow_registration: false,
            secret_key_file: None,
            trusted_proxies: Vec::new(),
            session_lifetime: Duration::from_secs(12 * 3600),
            session_idle_timeout: Duration::from_secs(30 * 60),
            session_cache: Duration::from_secs(1),
            log: "info".into(),
            log_format: "text".into(),
            audit_retention: Duration::from_secs(90 * 24 * 3600),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            sms: None,
        }
    }
}

/// Connections per instance. Twofold's statements are short and Argon2 hashing (the slow part of a request) runs at
/// most one per core outside any connection, so on 2 cores 8 connections keep requests from queueing for the database
/// while leaving a PostgreSQL server with its default `max_connections = 100` room for about ten instances.
const DEFAULT_POOL_SIZE: u32 = 8;

/// Open connections one instance serves at once. Each costs a file descriptor and a few KiB; the timeouts close idle
/// and slow ones, so the cap is reached only by a flood, and then new connections wait rather than the process
/// running out of descriptors.
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// A database URL whose `Debug` and `Display` never show a password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

/// Which database a [`DatabaseUrl`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite(PathBuf),
    Postgres,
}

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SQLite file this URL names, if it names one.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.0.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }

    /// The database this URL names, chosen by its scheme; `None` for a URL Twofold cannot use.
    pub fn kind(&self) -> Option<DatabaseKind> {
        if let Some(path) = self.sqlite_path() {
            return Some(DatabaseKind::Sqlite(path));
        }
        let url = Url::parse(&self.0).ok()?;
        let postgres = matches!(url.scheme(), "postgres" | "postgresql") && url.host().is_some();
        postgres.then_some(DatabaseKind::Postgres)
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                // Only fails for URLs that cannot carry a password, which this one just did.
                let _ = url.set_password(Some("********"));
                f.write_str(url.as_str())
            }
            Ok(_) => f.write_str(&self.0),
            // Not a URL the parser accepts, yet it may still carry `user:password@`: mask by hand.
            Err(_) => {
                let (scheme, rest) = self.0.split_once("://").unwrap_or(("", &self.0));
                let authority = rest.split(['/', '?']).next().unwrap_or(rest);
                match authority.rsplit_once('@') {
                    Some((userinfo, host)) if userinfo.contains(':') => {
                        let user = userinfo.split(':').next().unwrap_or_default();
                        let tail = &rest[authority.len()..];
                        write!(f, "{scheme}://{user}:********@{host}{tail}")
                    }
                    _ => f.write_str(&self.0),
                }
            }
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: DatabaseUrl,
    /// Connections each instance keeps to the database at most.
    pub database_pool_size: u32,
    /// The longest a request waits for the database (a connection and its statements) before it is answered
    /// `503 database_unavailable`.
    pub database_timeout: Duration,
    pub public_url: Url,
    pub issuer: String,
    pub allow_registration: bool,
    pub secret_key_file: PathBuf,
    /// Peers whose `X-Forwarded-For` header is believed (a load balancer in front of Twofold).
    pub trusted_proxies: Vec<IpAddr>,
    pub session_lifetime: Duration,
    pub session_idle_timeout: Duration,
    /// How long a full session read from the database may answer session checks without reading it again.
    pub session_cache: Duration,
    pub log: String,
    /// Structured JSON log lines instead of text.
    pub log_json: bool,
    /// Audit events older than this are pruned (daily, and at start).
    pub audit_retention: Duration,
    /// From a request's first byte until its header is complete.
    pub header_read_timeout: Duration,
    /// The longest a request's body may take to arrive.
    pub body_read_timeout: Duration,
    /// An idle connection (no request in progress, no byte either way) is closed after this.
    pub keep_alive_timeout: Duration,
    /// Connections served at once; more wait.
    pub max_connections: usize,
    /// The SMS gateway, if SMS codes are offered.
    pub sms: Option<SmsConfig>,
    /// Environment variables that looked like ours but name no key; logged as warnings once logging is up.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}. Check the path given to --config.")]
    File { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then the config file (if any), then `TWOFOLD_*` variables from the process environment, named by
    /// figment's `Env` provider (prefix removed, lower case, `__` for nesting: `TWOFOLD_SMS__GATEWAY` is
    /// `sms.gateway`).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        // `TWOFOLD_TEST_*` belong to the test suite (README, "Tests"), which runs servers in its own environment.
        let environment = Env::prefixed(ENV_PREFIX).split("__").filter(|key| {
            !key.as_str()
                .get(..5)
                .is_some_and(|start| start.eq_ignore_ascii_case("test_"))
        });
        Self::load_from(file, environment.iter().map(|(key, value)| (key.to_string(), value)))
    }

    /// Like [`Config::load`], with `settings` (dotted keys such as `sms.gateway`, values as text) in the place of
    /// the environment's variables; the tests' servers are configured this way.
    ///
    /// Values stay text, read as booleans and numbers where a key wants one (`extract_lossy`): figment's `Env` alone
    /// reads a value as a TOML-like literal, which would turn an SMS sender `+15550001111` into a number and take the
    /// quotes off a token. A setting no key of [`RawConfig`] has is dropped with a warning rather than refused, since
    /// an environment is shared with other programs; the same mistake in a file is an error.
    pub fn load_from(
        file: Option<&Path>,
        settings: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
                path: path.to_owned(),
                source,
            })?;
            figment = figment.merge(Toml::string(&text));
        }
        let mut environment = Dict::new();
        for (key, value) in settings {
            insert(&mut environment, &key, value);
        }
        let mut warnings = Vec::new();
        loop {
            let error = match figment
                .clone()
                .merge(Serialized::defaults(&environment))
                .extract_lossy::<RawConfig>()
            {
                Ok(raw) => {
                    let mut config = validate(raw)?;
                    config.warnings = warnings;
                    return Ok(config);
                }
                Err(error) => error,
            };
            let place = Place::of(&error, &environment, file);
            match (&error.kind, &place) {
                (figment::error::Kind::UnknownField(..), Place::Variable(variable))
                    if remove(&mut environment, &key_of(&error)) =>
                {
                    warnings.push(format!(
                        "ignoring the environment variable {variable}: Twofold has no such key (nested keys are \
                         joined by __, as in TWOFOLD_SMS__GATEWAY)"
                    ));
                }
                _ => return Err(describe(&error, &place)),
            }
        }
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// The origin browsers send for pages served from `public_url`, e.g. `https://login.example.com`.
    pub fn public_origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }
}

/// Puts `value` at the dotted `key` of `dict`, making the sections on the way.
fn insert(dict: &mut Dict, key: &str, value: String) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), Value::from(value));
        }
        Some((section, rest)) => {
            let entry = dict
                .entry(section.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// The value at the dotted `key` (given as its parts) of `dict`, if there is one.
fn lookup<'a>(dict: &'a Dict, key: &[&str]) -> Option<&'a Value> {
    let (last, sections) = key.split_last()?;
    let mut dict = dict;
    for section in sections {
        dict = dict.get(*section)?.as_dict()?;
    }
    dict.get(*last)
}

/// Takes the value at the dotted `key` (given as its parts) out of `dict`; whether there was one.
fn remove(dict: &mut Dict, key: &[&str]) -> bool {
    let Some((last, sections)) = key.split_last() else {
        return false;
    };
    let mut dict = dict;
    for section in sections {
        match dict.get_mut(*section) {
            Some(Value::Dict(_, inner)) => dict = inner,
            _ => return false,
        }
    }
    dict.remove(*last).is_some()
}

/// The dotted key an error is about, as its parts. figment's path ends with an unknown key's name, except inside
/// `[sms]`, which serde reads through a buffer and figment knows only as the section.
fn key_of(error: &figment::Error) -> Vec<&str> {
    let mut key: Vec<&str> = error.path.iter().map(String::as_str).collect();
    if let figment::error::Kind::UnknownField(field, _) = &error.kind {
        if key.last() != Some(&field.as_str()) {
            key.push(field);
        }
    }
    key
}

/// Where the value an error is about was written.
enum Place {
    /// An environment variable (or a test's setting), by its name.
    Variable(String),
    File(PathBuf),
    Default,
}

impl Place {
    fn of(error: &figment::Error, environment: &Dict, file: Option<&Path>) -> Self {
        let key = key_of(error);
        if lookup(environment, &key).is_some() {
            // Inside `[sms]` figment names only the section (see `key_of`), so such an error names its variables.
            let name = if key == ["sms"] {
                "SMS__*".to_owned()
            } else {
                key.join("__").to_ascii_uppercase()
            };
            return Self::Variable(format!("{ENV_PREFIX}{name}"));
        }
        file.map_or(Self::Default, |path| Self::File(path.to_owned()))
    }
}

/// As the error messages say it: " in FILE", " in TWOFOLD_KEY", or nothing.
impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Variable(name) => write!(f, " in {name}"),
            Self::File(path) => write!(f, " in {}", path.display()),
            Self::Default => Ok(()),
        }
    }
}

fn describe(error: &figment::Error, place: &Place) -> ConfigError {
    use figment::error::Kind;
    // Inside `[sms]` (an internally tagged enum, which serde reads through a buffer) figment knows only the section,
    // not the key; the section's only duration is `timeout` and its only number `budget_per_hour`.
    let in_sms = error.path.first().is_some_and(|key| key == "sms");
    let key = |sms_key: &str| {
        if in_sms {
            format!("sms.{sms_key}")
        } else {
            error.path.join(".")
        }
    };
    let message = match &error.kind {
        Kind::UnknownField(field, expected) if in_sms || expected.contains(&"budget_per_hour") => format!(
            "unknown key `sms.{field}`{place}: this gateway's keys are gateway, {}.",
            expected.join(", ")
        ),
        Kind::UnknownField(field, expected) => {
            format!("unknown key `{field}`{place}. Known keys: {}.", expected.join(", "))
        }
        Kind::InvalidValue(actual, expected) if expected == "a duration" => format!(
            "`{}`{place} is {actual}, which is not a duration: write one like \"500ms\", \"30s\", \"30m\", \"12h\" \
             or \"90d\".",
            key("timeout")
        ),
        Kind::InvalidType(actual, expected) if in_sms && !expected.starts_with("i64") => {
            format!("a key of [sms]{place} has the wrong type: found {actual}, expected {expected}.")
        }
        Kind::InvalidType(actual, expected) => format!(
            "`{}`{place} has the wrong type: found {actual}, expected {expected}.",
            key("budget_per_hour")
        ),
        Kind::UnknownVariant(found, _) if in_sms => format!(
            "[sms] gateway = {found:?}{place} is not one of \"http\", \"twilio\" or \"console\" (TWOFOLD_SMS__GATEWAY)."
        ),
        Kind::MissingField(field) if in_sms && field == "gateway" => {
            format!("[sms]{place} needs `gateway`: \"http\", \"twilio\" or \"console\" (TWOFOLD_SMS__GATEWAY).")
        }
        Kind::MissingField(field) if in_sms => format!(
            "[sms]{place}: this gateway needs `{field}` (TWOFOLD_SMS__{}).",
            field.to_ascii_uppercase()
        ),
        _ => format!("invalid configuration{place}: {error}"),
    };
    ConfigError::Invalid(message)
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid(message);
    let listen: SocketAddr = raw.listen.trim().parse().map_err(|_| {
        invalid(format!(
            "listen = {:?} is not an address and port such as 127.0.0.1:8080. Set `listen` in the config file or TWOFOLD_LISTEN.",
            raw.listen
        ))
    })?;
    let database_url = DatabaseUrl(raw.database_url.trim().to_owned());
    if database_url.kind().is_none() {
        return Err(invalid(format!(
            "database_url = {:?} is not supported: use sqlite://PATH (for example sqlite://twofold.db) or \
             postgres://USER:PASSWORD@HOST:PORT/DATABASE.",
            database_url.to_string()
        )));
    }
    if !(1..=1000).contains(&raw.database_pool_size) {
        return Err(invalid(format!(
            "database_pool_size = {} must be between 1 and 1000; it is the most connections one instance opens.",
            raw.database_pool_size
        )));
    }
    let database_timeout = within(
        "database_timeout",
        raw.database_timeout,
        Duration::from_millis(100)..=Duration::from_secs(300),
        "it bounds how long a request waits for the database",
    )?;
    let public_url = Url::parse(raw.public_url.trim())
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .ok_or_else(|| {
            invalid(format!(
                "public_url = {:?} is not an http(s) URL such as https://login.example.com. It is the address people use to reach Twofold.",
                raw.public_url
            ))
        })?;
    let issuer = raw.issuer.trim().to_owned();
    if issuer.is_empty() || issuer.chars().count() > 64 || issuer.contains(':') {
        return Err(invalid(format!(
            "issuer = {:?} must be 1 to 64 characters without a colon; authenticator apps show it next to the code.",
            raw.issuer
        )));
    }
    let secret_key_file = match raw.secret_key_file {
        Some(path) => path,
        None => default_key_file(&database_url),
    };
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .map(|item| {
            item.trim().parse::<IpAddr>().map_err(|_| {
                invalid(format!(
                    "trusted_proxies contains {item:?}, which is not an IP address such as 10.0.0.5."
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if tracing_subscriber::EnvFilter::try_new(raw.log.trim()).is_err() {
        return Err(invalid(format!(
            "log = {:?} is not a log filter; use a level such as \"info\" or \"debug\", or a list like \"twofold=debug,info\".",
            raw.log
        )));
    }
    let at_least_a_minute = Duration::from_secs(60)..=Duration::MAX;
    let session_lifetime = within(
        "session_lifetime",
        raw.session_lifetime,
        at_least_a_minute.clone(),
        "the longest a signed-in session lasts",
    )?;
    let session_idle_timeout = within(
        "session_idle_timeout",
        raw.session_idle_timeout,
        at_least_a_minute.clone(),
        "how long a signed-in session lasts without a request",
    )?;
    let session_cache = within(
        "session_cache",
        raw.session_cache,
        Duration::ZERO..=Duration::from_secs(10),
        "how long a session check may rely on what was read from the database, so how late a session ended by \
         another instance stops working here (\"0s\": never rely on it)",
    )?;
    let log_json = match raw.log_format.trim() {
        "text" => false,
        "json" => true,
        other => return Err(invalid(format!("log_format = {other:?} is not \"text\" or \"json\"."))),
    };
    let audit_retention = within(
        "audit_retention",
        raw.audit_retention,
        at_least_a_minute,
        "how long audit events are kept",
    )?;
    let connection = Duration::from_millis(100)..=Duration::from_secs(600);
    let header_read_timeout = within(
        "header_read_timeout",
        raw.header_read_timeout,
        connection.clone(),
        "how long a request's header may take to arrive",
    )?;
    let body_read_timeout = within(
        "body_read_timeout",
        raw.body_read_timeout,
        connection.clone(),
        "how long a request's body may take to arrive",
    )?;
    let keep_alive_timeout = within(
        "keep_alive_timeout",
        raw.keep_alive_timeout,
        connection,
        "how long an idle connection stays open",
    )?;
    if !(16..=1_000_000).contains(&raw.max_connections) {
        return Err(invalid(format!(
            "max_connections = {} must be between 16 and 1000000; it is how many connections are served at once.",
            raw.max_connections
        )));
    }
    let sms = raw.sms.map(validate_sms).transpose()?;
    Ok(Config {
        listen,
        database_url,
        database_pool_size: raw.database_pool_size,
        database_timeout,
        public_url,
        issuer,
        allow_registration: raw.allow_registration,
        secret_key_file,
        trusted_proxies,
        session_lifetime,
        session_idle_timeout,
        session_cache,
        log: raw.log,
        log_json,
        audit_retention,
        header_read_timeout,
        body_read_timeout,
        keep_alive_timeout,
        max_connections: raw.max_connections,
        sms,
        warnings: Vec::new(),
    })
}

const TWILIO_BASE_URL: &str = "https://api.twilio.com";

fn validate_sms(raw: RawSms) -> Result<SmsConfig, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid(message);
    let required = |value: String, key: &str| {
        if value.trim().is_empty() {
            Err(invalid(format!(
                "[sms] `{key}` is empty (TWOFOLD_SMS__{}).",
                key.to_ascii_uppercase()
            )))
        } else {
            Ok(value)
        }
    };
    let url = |value: String, key: &str| {
        Url::parse(value.trim())
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| invalid(format!("[sms] {key} = {value:?} is not an http(s) URL.")))
    };
    let (gateway, timeout, budget_per_hour) = match raw {
        RawSms::Http {
            url: address,
            token,
            timeout,
            budget_per_hour,
        } => (
            SmsGatewayConfig::Http {
                url: url(address, "url")?,
                token: token.filter(|t| !t.is_empty()).map(SecretString::from),
            },
            timeout,
            budget_per_hour,
        ),
        RawSms::Twilio {
            account_sid,
            auth_token,
            from,
            base_url,
            timeout,
            budget_per_hour,
        } => (
            SmsGatewayConfig::Twilio {
                account_sid: required(account_sid, "account_sid")?,
                auth_token: SecretString::from(required(auth_token, "auth_token")?),
                from: required(from, "from")?,
                base_url: url(base_url.unwrap_or_else(|| TWILIO_BASE_URL.into()), "base_url")?,
            },
            timeout,
            budget_per_hour,
        ),
        RawSms::Console {
            timeout,
            budget_per_hour,
        } => (SmsGatewayConfig::Console, timeout, budget_per_hour),
    };
    let timeout = within(
        "[sms] timeout",
        timeout.unwrap_or(Duration::from_secs(5)),
        Duration::from_millis(1)..=Duration::from_secs(60),
        "how long one try to reach the gateway may take",
    )?;
    let budget_per_hour = match budget_per_hour {
        None => None,
        Some(budget) if budget >= 1 => Some(budget),
        Some(budget) => {
            return Err(invalid(format!(
            "[sms] budget_per_hour = {budget} is not a number of texts of at least 1 (TWOFOLD_SMS__BUDGET_PER_HOUR)."
        )))
        }
    };
    Ok(SmsConfig {
        gateway,
        timeout,
        budget_per_hour,
    })
}

/// `value` if it lies in `range`, else the error that says what `key` is for.
fn within(
    key: &str,
    value: Duration,
    range: std::ops::RangeInclusive<Duration>,
    meaning: &str,
) -> Result<Duration, ConfigError> {
    if range.contains(&value) {
        return Ok(value);
    }
    let bound = |duration: &Duration| humantime::format_duration(*duration).to_string();
    let allowed = if *range.end() == Duration::MAX {
        format!("at least {}", bound(range.start()))
    } else {
        format!("between {} and {}", bound(range.start()), bound(range.end()))
    };
    Err(ConfigError::Invalid(format!(
        "{key} = \"{}\" is out of range: it must be {allowed}; it is {meaning}.",
        bound(&value)
    )))
}

/// `twofold.key` in the folder of the SQLite file; with PostgreSQL, in the working directory (every instance must then
/// be given the same key file).
fn default_key_file(database_url: &DatabaseUrl) -> PathBuf {
    let folder = database_url
        .sqlite_path()
        .and_then(|path| path.parent().map(Path::to_owned))
        .unwrap_or_default();
    folder.join("twofold.key")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings as `load_from` takes them: dotted keys, values as text.
    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.secret_key_file, PathBuf::from("twofold.key"));
        assert!(!config.allow_registration);
        assert_eq!(config.session_idle_timeout, Duration::from_secs(1800));
        assert_eq!(config.session_cache, Duration::from_secs(1));
    }

    #[test]
    // `Jail` fixes the closure's error type, figment's own.
    #[allow(clippy::result_large_err)]
    fn environment_overrides_and_unknown_variables_warn() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            for (name, value) in [
                ("TWOFOLD_LISTEN", "0.0.0.0:9000"),
                ("TWOFOLD_ALLOW_REGISTRATION", "yes"),
                ("TWOFOLD_DATABASE_URL", "sqlite:///var/lib/twofold/db.sqlite"),
                ("TWOFOLD_TRUSTED_PROXIES", "10.0.0.5, 10.0.0.6"),
                ("TWOFOLD_COLOUR", "blue"),
                ("TWOFOLD_SMS__GATEWAY", "twilio"),
                ("TWOFOLD_SMS__ACCOUNT_SID", "AC123"),
                ("TWOFOLD_SMS__AUTH_TOKEN", "\"0042\""),
                ("TWOFOLD_SMS__FROM", "+15550001111"),
                ("TWOFOLD_SMS__BUDGET_PER_HOUR", "40"),
                ("TWOFOLD_SMS__SPEED", "3"),
                ("LISTEN", "0.0.0.0:1"),
                ("TWOFOLD_TEST_DATABASE_URL", "postgres://the-test-suite/"),
            ] {
                jail.set_env(name, value);
            }
            let config = Config::load(None).unwrap();
            assert_eq!(config.listen.port(), 9000);
            assert!(config.allow_registration);
            assert_eq!(config.secret_key_file, PathBuf::from("/var/lib/twofold/twofold.key"));
            assert_eq!(config.trusted_proxies.len(), 2);
            let sms = config.sms.expect("sms configured");
            assert_eq!(sms.budget_per_hour, Some(40));
            let SmsGatewayConfig::Twilio { from, auth_token, .. } = sms.gateway else {
                panic!("the twilio gateway")
            };
            // Text stays text: not the number 15550001111, not the unquoted 0042.
            assert_eq!(from, "+15550001111");
            assert_eq!(secrecy::ExposeSecret::expose_secret(&auth_token), "\"0042\"");
            assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
            assert!(config.warnings[0].contains("TWOFOLD_COLOUR"), "{:?}", config.warnings);
            assert!(
                config.warnings[1].contains("TWOFOLD_SMS__SPEED"),
                "{:?}",
                config.warnings
            );
            jail.set_env("TWOFOLD_SESSION_LIFETIME", "soon");
            let message = Config::load(None).unwrap_err().to_string();
            assert!(
                message.contains("`session_lifetime` in TWOFOLD_SESSION_LIFETIME is string \"soon\""),
                "{message}"
            );
            Ok(())
        });
    }

    #[test]
    fn errors_say_what_and_how() {
        let bad = |pairs: &[(&str, &str)]| Config::load_from(None, env(pairs)).unwrap_err().to_string();
        assert!(bad(&[("listen", "nowhere")]).contains("127.0.0.1:8080"));
        assert!(bad(&[("public_url", "ftp://x")]).contains("public_url"));
        assert!(bad(&[("issuer", "a:b")]).contains("colon"));
        assert!(bad(&[("session_lifetime", "soon")]).contains("session_lifetime"));
        assert!(bad(&[("log", "=!=")]).contains("log filter"));
        assert!(bad(&[("log_format", "xml")]).contains("log_format"));
        assert!(bad(&[("audit_retention", "forever")]).contains("audit_retention"));
        assert!(bad(&[("database_url", "mysql://x")]).contains("sqlite://"));
        assert!(bad(&[("database_url", "postgres://")]).contains("postgres://USER"));
        assert!(bad(&[("database_pool_size", "0")]).contains("database_pool_size"));
        assert!(bad(&[("database_pool_size", "many")]).contains("database_pool_size"));
        assert!(bad(&[("database_timeout", "1ms")]).contains("database_timeout"));
        assert!(bad(&[("session_cache", "1m")]).contains("session_cache"));
        assert!(bad(&[("session_cache", "soon")]).contains("session_cache"));
        assert!(bad(&[("header_read_timeout", "1ms")]).contains("header_read_timeout"));
        assert!(bad(&[("body_read_timeout", "1h")]).contains("body_read_timeout"));
        assert!(bad(&[("keep_alive_timeout", "never")]).contains("keep_alive_timeout"));
        assert!(bad(&[("max_connections", "3")]).contains("max_connections"));
        assert!(bad(&[("max_connections", "lots")]).contains("max_connections"));
    }

    #[test]
    fn connection_limits_have_defaults_and_can_be_set() {
        let defaults = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(defaults.header_read_timeout, Duration::from_secs(10));
        assert_eq!(defaults.body_read_timeout, Duration::from_secs(10));
        assert_eq!(defaults.keep_alive_timeout, Duration::from_secs(75));
        assert_eq!(defaults.max_connections, 10_000);
        let set = Config::load_from(
            None,
            env(&[
                ("header_read_timeout", "2s"),
                ("keep_alive_timeout", "500ms"),
                ("max_connections", "64"),
            ]),
        )
        .unwrap();
        assert_eq!(set.header_read_timeout, Duration::from_secs(2));
        assert_eq!(set.keep_alive_timeout, Duration::from_millis(500));
        assert_eq!(set.max_connections, 64);
    }

    #[test]
    fn unknown_key_in_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twofold.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\ncolour = \"blue\"\n").unwrap();
        let message = Config::load_from(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(message.contains("unknown key `colour`"), "{message}");
        let missing = Config::load_from(Some(&dir.path().join("nope.toml")), env(&[]));
        assert!(matches!(missing, Err(ConfigError::File { .. })));
    }

    #[test]
    fn sms_section_from_environment() {
        let config = Config::load_from(
            None,
            env(&[
                ("sms.gateway", "twilio"),
                ("sms.account_sid", "AC123"),
                ("sms.auth_token", "sekrit"),
                ("sms.from", "+15550001111"),
                ("sms.timeout", "500ms"),
            ]),
        )
        .unwrap();
        let sms = config.sms.expect("sms configured");
        assert_eq!(sms.timeout, Duration::from_millis(500));
        assert!(matches!(sms.gateway, SmsGatewayConfig::Twilio { .. }));
        assert!(!format!("{:?}", sms.gateway).contains("sekrit"));
        assert!(Config::load_from(None, env(&[])).unwrap().sms.is_none());
        let bad = |pairs: &[(&str, &str)]| Config::load_from(None, env(pairs)).unwrap_err().to_string();
        assert!(bad(&[("sms.gateway", "pigeon")]).contains("\"http\""));
        assert!(bad(&[("sms.gateway", "http")]).contains("needs `url`"));
        assert!(bad(&[("sms.gateway", "console"), ("sms.timeout", "0s")]).contains("timeout"));
        let budget =
            |value: &str| Config::load_from(None, env(&[("sms.gateway", "console"), ("sms.budget_per_hour", value)]));
        assert_eq!(budget("40").unwrap().sms.expect("sms").budget_per_hour, Some(40));
        assert!(budget("0").unwrap_err().to_string().contains("budget_per_hour"));
        assert!(budget("many").unwrap_err().to_string().contains("budget_per_hour"));
    }

    #[test]
    fn unknown_key_in_sms_section_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twofold.toml");
        std::fs::write(&path, "[sms]\ngateway = \"console\"\nspeed = 3\n").unwrap();
        let message = Config::load_from(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(message.contains("unknown key `sms.speed`"), "{message}");
    }

    /// One configuration file, and the whole error it gets.
    fn file_error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twofold.toml");
        std::fs::write(&path, text).unwrap();
        let message = Config::load_from(Some(&path), env(&[])).unwrap_err().to_string();
        message.replace(&path.display().to_string(), "FILE")
    }

    #[test]
    fn each_kind_of_mistake_gets_its_own_message() {
        let cases = [
            (
                "session_lifetime = \"soon\"",
                "`session_lifetime` in FILE is string \"soon\", which is not a duration: write one like \"500ms\", \
                 \"30s\", \"30m\", \"12h\" or \"90d\".",
            ),
            (
                "session_idle_timeout = \"10s\"",
                "session_idle_timeout = \"10s\" is out of range: it must be at least 1m; it is how long a signed-in \
                 session lasts without a request.",
            ),
            (
                "session_cache = \"1m\"",
                "session_cache = \"1m\" is out of range: it must be between 0s and 10s; it is how long a session check \
                 may rely on what was read from the database, so how late a session ended by another instance stops \
                 working here (\"0s\": never rely on it).",
            ),
            (
                "allow_registration = \"maybe\"",
                "`allow_registration` in FILE has the wrong type: found string \"maybe\", expected a boolean.",
            ),
            (
                "max_connections = \"lots\"",
                "`max_connections` in FILE has the wrong type: found string \"lots\", expected usize.",
            ),
            ("[sms]\ntimeout = \"5s\"", "[sms] in FILE needs `gateway`: \"http\", \"twilio\" or \"console\" (TWOFOLD_SMS__GATEWAY)."),
            (
                "[sms]\ngateway = \"pigeon\"",
                "[sms] gateway = \"pigeon\" in FILE is not one of \"http\", \"twilio\" or \"console\" (TWOFOLD_SMS__GATEWAY).",
            ),
            (
                "[sms]\ngateway = \"twilio\"\naccount_sid = \"AC1\"\nfrom = \"+15550001111\"",
                "[sms] in FILE: this gateway needs `auth_token` (TWOFOLD_SMS__AUTH_TOKEN).",
            ),
            (
                "[sms]\ngateway = \"http\"\nurl = \"https://sms.example\"\nfrom = \"+15550001111\"",
                "unknown key `sms.from` in FILE: this gateway's keys are gateway, url, token, timeout, budget_per_hour.",
            ),
            (
                "[sms]\ngateway = \"console\"\ntimeout = \"fast\"",
                "`sms.timeout` in FILE is string \"fast\", which is not a duration: write one like \"500ms\", \"30s\", \
                 \"30m\", \"12h\" or \"90d\".",
            ),
            (
                "[sms]\ngateway = \"console\"\ntimeout = \"2m\"",
                "[sms] timeout = \"2m\" is out of range: it must be between 1ms and 1m; it is how long one try to \
                 reach the gateway may take.",
            ),
            (
                "[sms]\ngateway = \"console\"\nbudget_per_hour = \"many\"",
                "`sms.budget_per_hour` in FILE has the wrong type: found string \"many\", expected i64.",
            ),
            (
                "[sms]\ngateway = \"http\"\nurl = 5",
                "a key of [sms] in FILE has the wrong type: found signed int `5`, expected a string.",
            ),
            (
                "[sms]\ngateway = \"http\"\nurl = \"ftp://sms.example\"",
                "[sms] url = \"ftp://sms.example\" is not an http(s) URL.",
            ),
            (
                "[sms]\ngateway = \"twilio\"\naccount_sid = \" \"\nauth_token = \"t\"\nfrom = \"+1\"",
                "[sms] `account_sid` is empty (TWOFOLD_SMS__ACCOUNT_SID).",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(file_error(text), expected, "for:\n{text}");
        }
    }

    #[test]
    fn postgres_urls_choose_postgres_and_keep_the_key_in_the_working_directory() {
        for url in [
            "postgres://twofold@db.internal/twofold",
            "postgresql://u:p@127.0.0.1:5432/x?sslmode=require",
        ] {
            let config = Config::load_from(None, env(&[("database_url", url)])).unwrap();
            assert_eq!(config.database_url.kind(), Some(DatabaseKind::Postgres));
            assert_eq!(config.secret_key_file, PathBuf::from("twofold.key"));
        }
        let config =
            Config::load_from(None, env(&[("database_pool_size", "3"), ("database_timeout", "750ms")])).unwrap();
        assert_eq!(config.database_pool_size, 3);
        assert_eq!(config.database_timeout, Duration::from_millis(750));
        let defaults = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(
            (defaults.database_pool_size, defaults.database_timeout),
            (8, Duration::from_secs(5))
        );
    }

    #[test]
    fn database_password_is_masked() {
        let url = DatabaseUrl("postgres://twofold:hunter2@db/twofold".into());
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(!url.to_string().contains("hunter2"));
        let message = Config::load_from(None, env(&[("database_url", "postgres://u:hunter2@/")]))
            .unwrap_err()
            .to_string();
        assert!(!message.contains("hunter2"), "{message}");
    }
}
