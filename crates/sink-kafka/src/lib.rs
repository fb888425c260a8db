//! activity-relay's kafka sink. (Built under issue 5.)
