//! TLS: certificates from certs/, SNI, and the one rustls policy.
