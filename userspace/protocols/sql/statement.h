// What an SQL statement's text becomes for metrics and the slow-operation log, shared by the SQL
// protocols (postgres, mysql): its verb, an OpenTelemetry query summary, its one table, and the
// statement with every literal replaced. Nothing returned ever holds a literal value.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace loupe::sql {

struct StatementShape {
    // db_operation_name: the verb upper-cased ("SELECT", "INSERT", "BEGIN", "COMMIT"...); "_OTHER"
    // when the text starts with none loupe knows.
    std::string operation;
    // db_query_summary: the verb and the tables it names ("SELECT pgbench_accounts"), at most
    // kMaxSummary bytes, never a literal.
    std::string summary;
    // db_collection_name: the table when the statement names exactly one; else empty.
    std::string collection;
    // The statement with every literal (string, number, $n/? placeholders stay) replaced by `?`,
    // whitespace collapsed, at most kMaxNormalized bytes: the slow-operation log's text.
    std::string normalized;
};

inline constexpr std::size_t kMaxSummary = 255;
inline constexpr std::size_t kMaxNormalized = 1024;

// Describes one statement (the text of a Parse, a COM_STMT_PREPARE, or one statement of a
// simple query).
StatementShape describe_statement(std::string_view sql);

// The statements of a simple query (PostgreSQL's `Q`, a MySQL multi-statement COM_QUERY): split on
// `;` outside quotes, comments and dollar-quoted strings; empty statements left out.
std::vector<std::string_view> split_statements(std::string_view sql);

}  // namespace loupe::sql
