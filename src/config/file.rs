//! The configuration file as serde sees it.
