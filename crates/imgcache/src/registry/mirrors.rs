//! Mirrors on the pull side, from the configuration users already have (being written).
