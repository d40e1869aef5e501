// The PostgreSQL frontend/backend protocol 3.0 as the pipeline sees it: one parser per connection
// behind protocols::ConnectionParser. What it reports, per statement run (protocols::Request):
//   operation     the statement's verb (sql::describe_statement): "SELECT", "INSERT", "BEGIN"...;
//                 "EXECUTE" for a prepared statement whose Parse loupe never saw
//   target        db_query_summary: the verb and tables ("SELECT pgbench_accounts"), or
//                 "EXECUTE <statement name>" for a statement prepared before loupe saw it
//   statement     the statement with its literals replaced (the slow-operation log's text)
//   collection    the one table the statement names, else empty
//   error         empty, or the ErrorResponse's SQLSTATE ("23505", "42601"), or "closed"
//   db_namespace  the database of the StartupMessage (its user when it names none)
//   start_ns/end_ns  client: first byte of the request written -> last byte of that statement's
//                    reply read; server: first request byte read -> last reply byte written
// The details of the matching are documented on PostgresConnection (connection.h).
#pragma once

#include <memory>

#include "protocols/protocol.h"

namespace loupe::postgres {

std::unique_ptr<protocols::ConnectionParser> make_parser(
    protocols::Side hint = protocols::Side::kUnknown);

}  // namespace loupe::postgres
