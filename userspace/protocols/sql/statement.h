// What an SQL statement's text becomes for metrics and the slow-operation log, shared by the SQL
// protocols (postgres, mysql): its verb, an OpenTelemetry query summary, its one table, and the
// statement with every literal replaced. Nothing returned ever holds a literal value.
//
// Lexical rules (one hand-written tokenizer, linear in the input, no regex):
//   '...' strings ('' doubled; backslash escapes in MySQL and, by default, everywhere), E'...',
//   X'...', B'...', N'...', U&'...'; PostgreSQL $tag$...$tag$ dollar quotes; "identifiers"
//   (MySQL: "..." is a string); `identifiers`; -- and /* */ comments (nested, as PostgreSQL does:
//   dropping more text never leaks; MySQL's executable /*!NNNNN ... */ is SQL), # comments
//   (MySQL and default); numbers (1, 1.5, .5, 1e5, 0x1F, 0b101, 1_000); $1 and ? placeholders
//   (kept as they are).
// Literals (strings, numbers) become `?`; TRUE, FALSE and NULL are keywords and are kept (they
// tell `IS NULL` from `= ?` and hold no data). An unterminated string, dollar quote or quoted
// identifier swallows the rest of the text as one literal.
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

// Whose lexical rules apply where PostgreSQL and MySQL disagree:
//   postgres  '...' has no backslash escapes (standard_conforming_strings, on since 9.1; E'...'
//             has them), "..." is an identifier, # is an operator, $tag$ quotes;
//   mysql     '...' and "..." are strings with backslash escapes, $ is an identifier character;
//   any       (the default) backslash escapes in '...', "..." an identifier, # a comment, $tag$
//             quotes: right for both but for a PostgreSQL string ending in a backslash and a
//             MySQL double-quoted string. Parsers that know their server should say so.
enum class Dialect { any, postgres, mysql };

// Describes one statement (the text of a Parse, a COM_STMT_PREPARE, or one statement of a
// simple query).
StatementShape describe_statement(std::string_view sql);
StatementShape describe_statement(std::string_view sql, Dialect dialect);

// The statements of a simple query (PostgreSQL's `Q`, a MySQL multi-statement COM_QUERY): split on
// `;` outside quotes, comments and dollar-quoted strings; empty statements left out. Each view is
// trimmed of surrounding whitespace and lies inside `sql`.
std::vector<std::string_view> split_statements(std::string_view sql);
std::vector<std::string_view> split_statements(std::string_view sql, Dialect dialect);

}  // namespace loupe::sql
