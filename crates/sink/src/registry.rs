//! Sink types that register themselves.
//!
//! A broker crate implements [`SinkType`] once: the `type` name of its `[[sinks]]`
//! entries, its typed configuration, the one check of that configuration, the line
//! `activity-relay run --check` prints, where it publishes (for the AsyncAPI document),
//! what it must not share with another sink, and how it connects. The relay keeps a list
//! of [`Registered`] sink types, one line per broker, and knows no broker by name: it
//! reads `type`, finds the entry, and from then on holds a [`SinkSpec`].
//!
//! ```ignore
//! pub static SINK_TYPES: &[&dyn SinkFactory] = &[
//!     &Registered::<relay_sink::file::FileSinkType>::new(),
//!     &Registered::<relay_sink_kafka::KafkaSinkType>::new(),
//! ];
//! ```

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Deserialize as _;

use crate::Sink;

/// Any sink type's error, as the relay holds it (its `Display` is the sink's own).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where a broker sink publishes, for `activity-relay schema asyncapi`: one AsyncAPI
/// server, and the bindings of its channels and messages.
#[derive(Clone, Debug, PartialEq)]
pub struct AsyncApiServer {
    /// `host[:port]` of the (first) broker.
    pub host: String,
    /// AsyncAPI protocol name (`kafka`, `nats`, `amqp`).
    pub protocol: &'static str,
    /// The destination template (topic, subject, routing key).
    pub template: String,
    /// Whether messages use the CloudEvents binary mode.
    pub binary: bool,
    /// A channel binding: (binding name, its JSON).
    pub channel_binding: Option<(&'static str, serde_json::Value)>,
    /// A message binding: (binding name, its JSON).
    pub message_binding: Option<(&'static str, serde_json::Value)>,
}

/// Something one sink must have to itself (a NATS sink's JetStream stream): two sinks
/// whose `key`s are equal are refused by `run --check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exclusive {
    /// Compared between sinks, never shown (it may hold a URL's credentials).
    pub key: String,
    /// What it is, for the message: `the JetStream stream "S" on nats://host:4222`.
    pub what: String,
    /// Why it cannot be shared, and what to do.
    pub why: &'static str,
}

/// One kind of sink, implemented by its crate. See the module docs.
pub trait SinkType: Send + Sync + 'static {
    /// The `type` of its `[[sinks]]` entries.
    const TYPE: &'static str;
    /// Its section (unknown keys are errors; every default is in its `Default`). Its
    /// `Debug` must hide secrets.
    type Config: DeserializeOwned + fmt::Debug + Send + Sync + 'static;
    /// Why it could not be checked, prepared or connected.
    type Error: std::error::Error + Send + Sync + 'static;
    type Sink: Sink;

    /// Keys of its section renamed: (old name, new name). The relay still reads the old
    /// name, with a warning naming the new one, until the next release.
    const RENAMED: &'static [(&'static str, &'static str)] = &[];

    /// Everything that can be checked without a network and without creating anything;
    /// returns the line `run --check` prints for it.
    fn check(name: &str, cfg: &Self::Config) -> Result<String, Self::Error>;

    /// What `run` does once, before the sink starts (the file sink creates its directory).
    fn prepare(_name: &str, _cfg: &Self::Config) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Where it publishes, for the AsyncAPI document; `None` for a sink that is not a
    /// broker.
    fn asyncapi(_cfg: &Self::Config) -> Option<AsyncApiServer> {
        None
    }

    /// What it may not share with another sink.
    fn exclusive(_cfg: &Self::Config) -> Option<Exclusive> {
        None
    }

    /// Opens or connects the sink.
    fn connect(
        name: &str,
        cfg: &Self::Config,
    ) -> impl Future<Output = Result<Self::Sink, Self::Error>> + Send;
}

/// A sink type as the relay's registry holds it: reads a `[[sinks]]` entry.
pub trait SinkFactory: Send + Sync + 'static {
    /// The `type` it reads.
    fn type_name(&self) -> &'static str;

    /// [`SinkType::RENAMED`].
    fn renamed(&self) -> &'static [(&'static str, &'static str)];

    /// Deserializes the entry's settings (what is left of the entry once the relay took
    /// `name`, `type`, `types` and `exclude_types`). Checking is [`SinkSpec::check`].
    fn parse(&self, name: &str, section: toml::Value)
        -> Result<Arc<dyn SinkSpec>, toml::de::Error>;
}

/// One configured sink, of any type.
pub trait SinkSpec: fmt::Debug + Send + Sync + 'static {
    /// Its `name`.
    fn name(&self) -> &str;
    /// Its `type`.
    fn type_name(&self) -> &'static str;
    /// [`SinkType::check`].
    fn check(&self) -> Result<String, BoxError>;
    /// [`SinkType::prepare`].
    fn prepare(&self) -> Result<(), BoxError>;
    /// [`SinkType::asyncapi`].
    fn asyncapi(&self) -> Option<AsyncApiServer>;
    /// [`SinkType::exclusive`].
    fn exclusive(&self) -> Option<Exclusive>;
    /// [`SinkType::connect`].
    fn connect(&self) -> BoxFuture<'_, Result<Arc<dyn Sink>, BoxError>>;
}

/// [`SinkType`] `T` as a registry entry: `&Registered::<T>::new()`.
pub struct Registered<T>(PhantomData<fn() -> T>);

impl<T> Registered<T> {
    pub const fn new() -> Self {
        Registered(PhantomData)
    }
}

impl<T> Default for Registered<T> {
    fn default() -> Self {
        Registered::new()
    }
}

impl<T: SinkType> SinkFactory for Registered<T> {
    fn type_name(&self) -> &'static str {
        T::TYPE
    }

    fn renamed(&self) -> &'static [(&'static str, &'static str)] {
        T::RENAMED
    }

    fn parse(
        &self,
        name: &str,
        section: toml::Value,
    ) -> Result<Arc<dyn SinkSpec>, toml::de::Error> {
        let cfg = T::Config::deserialize(section)?;
        Ok(Arc::new(Spec::<T> {
            name: name.to_owned(),
            cfg,
        }))
    }
}

/// A parsed `[[sinks]]` entry of type `T`.
struct Spec<T: SinkType> {
    name: String,
    cfg: T::Config,
}

impl<T: SinkType> fmt::Debug for Spec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkSpec")
            .field("type", &T::TYPE)
            .field("name", &self.name)
            .field("config", &self.cfg)
            .finish()
    }
}

impl<T: SinkType> SinkSpec for Spec<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn type_name(&self) -> &'static str {
        T::TYPE
    }

    fn check(&self) -> Result<String, BoxError> {
        Ok(T::check(&self.name, &self.cfg)?)
    }

    fn prepare(&self) -> Result<(), BoxError> {
        Ok(T::prepare(&self.name, &self.cfg)?)
    }

    fn asyncapi(&self) -> Option<AsyncApiServer> {
        T::asyncapi(&self.cfg)
    }

    fn exclusive(&self) -> Option<Exclusive> {
        T::exclusive(&self.cfg)
    }

    fn connect(&self) -> BoxFuture<'_, Result<Arc<dyn Sink>, BoxError>> {
        Box::pin(async move {
            let sink = T::connect(&self.name, &self.cfg).await?;
            Ok(Arc::new(sink) as Arc<dyn Sink>)
        })
    }
}

/// The host (and port) of the first address of a broker URL list, without scheme,
/// credentials or path: `nats://u:p@a:4222,nats://b:4222` → `a:4222`. A comma inside a
/// URL's credentials (`amqp://user:pa,ss@host/`) is not taken for a separator: in a list of
/// URLs, a piece without `://` belongs to the one before it.
pub fn first_host(urls: &str) -> String {
    let urls = urls.trim();
    let first = if urls.contains("://") {
        let mut pieces = urls.split(',');
        let mut first = pieces.next().unwrap_or_default().to_string();
        for piece in pieces {
            if piece.contains("://") {
                break;
            }
            first.push(',');
            first.push_str(piece);
        }
        first
    } else {
        urls.to_string()
    };
    let no_scheme = first.split_once("://").map_or(first.as_str(), |(_, r)| r);
    let no_creds = no_scheme.rsplit_once('@').map_or(no_scheme, |(_, h)| h);
    no_creds
        .split(['/', ','])
        .next()
        .unwrap_or(no_creds)
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_host_drops_scheme_credentials_path_and_other_servers() {
        assert_eq!(first_host("nats://u:p@a:4222,b:4222"), "a:4222");
        assert_eq!(
            first_host("amqp://guest:guest@rabbit:5672/%2f"),
            "rabbit:5672"
        );
        assert_eq!(first_host("k1:9092,k2:9092"), "k1:9092");
        assert_eq!(first_host("nats://a:4222,nats://b:4222"), "a:4222");
        assert_eq!(first_host("host"), "host");
        // A comma in the credentials is not a separator, and no part of them is shown.
        assert_eq!(first_host("amqp://user:pa,ss@rabbit:5672/"), "rabbit:5672");
        assert_eq!(first_host("nats://a:4222,b:4222"), "a:4222");
    }
}
