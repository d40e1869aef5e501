// PLACEHOLDER to be replaced by the real summariser (sql-shape branch): the verb only.
#include "protocols/sql/statement.h"

#include <cctype>

namespace loupe::sql {

StatementShape describe_statement(std::string_view sql) {
    StatementShape shape;
    std::size_t i = 0;
    while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i])))
        ++i;
    while (i < sql.size() && std::isalpha(static_cast<unsigned char>(sql[i])))
        shape.operation += static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i++])));
    if (shape.operation.empty()) shape.operation = "_OTHER";
    shape.summary = shape.operation;
    shape.normalized = shape.operation;
    return shape;
}

std::vector<std::string_view> split_statements(std::string_view sql) {
    return {sql};
}

}  // namespace loupe::sql
