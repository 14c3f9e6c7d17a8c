/*
 * http_fetch.h — the http_fetch tool's policy checks, exposed for unit tests. The
 * tool itself is tool_http_fetch in tools.h.
 */
#ifndef FIG_HTTP_FETCH_H
#define FIG_HTTP_FETCH_H

#include <stddef.h>
#include <sys/socket.h>

/* NULL when `addr` is a public unicast address figment may connect to; otherwise
 * why not, as text for the model ("loopback addresses are not allowed"). IPv4
 * addresses embedded in IPv6 (::ffff:a.b.c.d, ::a.b.c.d, 64:ff9b::/96, 2002::/16)
 * are judged as the IPv4 address. */
const char *http_fetch_address_refusal(const struct sockaddr *addr, socklen_t addrlen);

/* 1 when the lowercase `host` matches one of `patterns`: "example.com" exactly, or
 * "*.example.com" for any subdomain (not example.com itself). */
int http_fetch_host_match(char *const *patterns, size_t n, const char *host);

#endif
