// The Redis protocol (RESP2, RESP3, inline commands) as the pipeline sees it: one parser per
// connection behind protocols::ConnectionParser. What it reports, per finished command
// (protocols::Request):
//   operation     the command as sent, upper-cased; a container's subcommand kept
//                 ("CONFIG GET", "CLIENT SETNAME"); "_OTHER" for a name that is no command word
//   error         empty, or the error reply's prefix ("ERR", "WRONGTYPE", "NOAUTH", "MOVED",
//                 [A-Z0-9_], at most 32 bytes), or "closed" (no reply before the close)
//   db_namespace  the database selected when the command ran ("0" unless SELECT said otherwise)
//   cache_hits / cache_misses   lookups answered by read commands (see stitcher.cc / README)
//   start_ns/end_ns  client: first byte written -> last reply byte read;
//                    server: first byte read -> last reply byte written
// The details of the matching are documented on RedisConnection (stitcher.h).
#pragma once

#include <memory>

#include "protocols/protocol.h"

namespace loupe::redis {

std::unique_ptr<protocols::ConnectionParser> make_parser(
    protocols::Side hint = protocols::Side::kUnknown);

}  // namespace loupe::redis
