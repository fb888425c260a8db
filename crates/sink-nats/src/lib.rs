//! activity-relay's nats sink. (Built under issue 5.)
