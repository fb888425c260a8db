//! activity-relay's rabbitmq sink. (Built under issue 5.)
