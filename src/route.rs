//! Routing: which pool serves a request, and what path it is sent with.
//!
//! Routes are tried in order and the first match wins (SPEC §2). A route's
//! host matcher compares the request's host without its port and without
//! case; `*.example.com` matches exactly one more label. Pure code: no IO.

use crate::config::{HostMatch, Route};

/// Returns the index of the first route matching `host` and `path`.
///
/// `host` is the request's host as sent (it may carry a port and upper
/// case); `None` when the request named no host.
pub fn resolve(routes: &[Route], host: Option<&str>, path: &str) -> Option<usize> {
    let host = host.map(host_without_port);
    routes.iter().position(|route| {
        let host_ok = match (&route.host, host) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(matcher), Some(host)) => host_matches(matcher, host),
        };
        host_ok
            && route
                .path_prefix
                .as_deref()
                .is_none_or(|prefix| path.starts_with(prefix))
    })
}

/// The path sent upstream: `path_and_query` with the route's prefix removed
/// when it asks for that (`/services/foo/v1/x?y` → `/x?y`; `/` if nothing
/// is left of the path).
pub fn upstream_path<'a>(route: &Route, path_and_query: &'a str) -> std::borrow::Cow<'a, str> {
    let Some(prefix) = route.path_prefix.as_deref().filter(|_| route.strip_prefix) else {
        return path_and_query.into();
    };
    let Some(rest) = path_and_query.strip_prefix(prefix) else {
        return path_and_query.into();
    };
    if rest.starts_with('/') {
        rest.into()
    } else {
        format!("/{rest}").into()
    }
}

/// The host part of a `Host` value: `Example.COM:8443` → `Example.COM`,
/// `[::1]:443` → `[::1]`.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

fn host_matches(matcher: &HostMatch, host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    match matcher {
        HostMatch::Exact(name) => host.eq_ignore_ascii_case(name),
        HostMatch::Wildcard(parent) => match host.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(parent),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<HostMatch>, prefix: Option<&str>, strip: bool, pool: &str) -> Route {
        Route {
            host,
            path_prefix: prefix.map(str::to_owned),
            strip_prefix: strip,
            pool: pool.to_owned(),
        }
    }

    fn spec_routes() -> Vec<Route> {
        vec![
            route(
                Some(HostMatch::Exact("api.example.com".into())),
                None,
                false,
                "api",
            ),
            route(None, Some("/services/foo/v1/"), true, "foo"),
            route(
                Some(HostMatch::Wildcard("example.org".into())),
                None,
                false,
                "org",
            ),
            route(None, None, false, "website"),
        ]
    }

    #[test]
    fn first_match_wins_and_default_catches_the_rest() {
        let routes = spec_routes();
        assert_eq!(
            resolve(&routes, Some("api.example.com"), "/services/foo/v1/x"),
            Some(0)
        );
        assert_eq!(
            resolve(&routes, Some("www.example.com"), "/services/foo/v1/x"),
            Some(1)
        );
        assert_eq!(
            resolve(&routes, Some("www.example.com"), "/services/foo/v2/x"),
            Some(3)
        );
        assert_eq!(resolve(&routes, None, "/"), Some(3));
    }

    #[test]
    fn host_ignores_port_and_case() {
        let routes = spec_routes();
        assert_eq!(resolve(&routes, Some("API.Example.COM:8443"), "/"), Some(0));
        assert_eq!(resolve(&routes, Some("api.example.com."), "/"), Some(0));
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let routes = spec_routes();
        assert_eq!(resolve(&routes, Some("a.example.org"), "/"), Some(2));
        assert_eq!(resolve(&routes, Some("example.org"), "/"), Some(3));
        assert_eq!(resolve(&routes, Some("a.b.example.org"), "/"), Some(3));
        assert_eq!(resolve(&routes, Some(".example.org"), "/"), Some(3));
    }

    #[test]
    fn no_default_means_no_route() {
        let routes = vec![route(None, Some("/api/"), false, "api")];
        assert_eq!(resolve(&routes, Some("x"), "/other"), None);
        assert_eq!(resolve(&[], Some("x"), "/"), None);
    }

    #[test]
    fn host_route_needs_a_host() {
        let routes = vec![route(
            Some(HostMatch::Exact("a.com".into())),
            None,
            false,
            "a",
        )];
        assert_eq!(resolve(&routes, None, "/"), None);
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash_and_the_query() {
        let foo = route(None, Some("/services/foo/v1/"), true, "foo");
        assert_eq!(upstream_path(&foo, "/services/foo/v1/x/y?z=1"), "/x/y?z=1");
        assert_eq!(upstream_path(&foo, "/services/foo/v1/"), "/");
        assert_eq!(upstream_path(&foo, "/services/foo/v1/?q"), "/?q");
        let api = route(None, Some("/api"), true, "api");
        assert_eq!(upstream_path(&api, "/api/users"), "/users");
        let keep = route(None, Some("/api"), false, "api");
        assert_eq!(upstream_path(&keep, "/api/users"), "/api/users");
    }

    #[test]
    fn host_without_port_handles_ipv6() {
        assert_eq!(host_without_port("[::1]:443"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
        assert_eq!(host_without_port("example.com:80"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
    }
}
