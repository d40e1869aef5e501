// The MySQL / MariaDB client/server protocol as the pipeline sees it: one parser per connection
// behind protocols::ConnectionParser. What it reports, per finished command (protocols::Request):
//   operation    COM_QUERY: the statement's verb (SELECT, INSERT, BEGIN...); COM_STMT_EXECUTE:
//                the verb of the prepared text; other commands their name without COM_
//                (STMT_PREPARE, STMT_CLOSE, STMT_RESET, STMT_FETCH, PING, QUIT, INIT_DB...);
//                STMT_EXECUTE for a statement prepared before loupe saw the connection
//   target       db_query_summary: verb and tables of the statement (empty when unknown)
//   statement    the statement with literals replaced (slow-operation log only)
//   collection   the one table the statement names, else empty
//   system_name  "mariadb" when the server greeting's version says MariaDB, "mysql" for another
//                greeting, empty when the greeting was not seen (the spec's "mysql")
//   db_namespace the database in use (HandshakeResponse, COM_INIT_DB), else empty
//   error        the ERR packet's error number ("1062"), "closed", or empty
//   start_ns/end_ns  the command's first byte -> the last byte of its reply (one statement's
//                    result when a COM_QUERY holds several)
// The matching is documented on MysqlConnection (connection.h).
#pragma once

#include <memory>

#include "protocols/protocol.h"

namespace loupe::mysql {

std::unique_ptr<protocols::ConnectionParser> make_parser(
    protocols::Side hint = protocols::Side::kUnknown);

}  // namespace loupe::mysql
