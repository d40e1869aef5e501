// libFuzzer target for the SQL summariser (protocols/sql/statement.h): crashes, sanitizer reports
// and its promises: bounds, UTF-8, splits inside the text, and no literal in any output.
//
// Input: byte 0 picks the dialect (bits 0-1, mod 3) and the mode (bit 2):
//   mode 0  the rest as it is: bounds, UTF-8 and splitting are checked;
//   mode 1  the rest with every quote, comment and escape character blanked, then secrets spliced
//           in as literals where a `~` was ('Zq7Secret', E'Zq7Secret', $z$Zq7Secret$z$, numbers;
//           bytes >= 0x80 are blanked too): no output may hold `Zq7`, and every digit in an output
//           must belong to a name (follow a letter, `_` or `$`): no number literal was copied.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocols/sql/statement.h"
#include "segment_records.h"  // check()

namespace {

using loupe::sql::Dialect;
using loupe::sql::StatementShape;

bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = c < 0x80           ? 1
                          : (c >> 5) == 0x6  ? 2
                          : (c >> 4) == 0xE  ? 3
                          : (c >> 3) == 0x1E ? 4
                                             : 0;
        if (len == 0 || i + len > s.size() || (len == 2 && c < 0xC2)) return false;
        for (std::size_t k = 1; k < len; ++k) {
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
        }
        i += len;
    }
    return true;
}

bool name_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$' || c >= 0x80 ||
           (c >= '0' && c <= '9');
}

void check_shape(const StatementShape& shape) {
    check(!shape.operation.empty() && shape.operation.size() <= 40);
    check(shape.summary.size() <= loupe::sql::kMaxSummary);
    check(shape.normalized.size() <= loupe::sql::kMaxNormalized);
    check(shape.collection.size() <= 160);
    check(valid_utf8(shape.summary));
    check(valid_utf8(shape.collection));
    check(valid_utf8(shape.normalized));
}

// Every digit follows a name character (or another digit that does).
bool digits_only_in_names(std::string_view s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] < '0' || s[i] > '9') continue;
        if (i == 0 || !name_char(static_cast<unsigned char>(s[i - 1]))) return false;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    auto dialect = static_cast<Dialect>((data[0] & 3) % 3);
    bool splice = (data[0] & 4) != 0;
    std::string sql(reinterpret_cast<const char*>(data + 1), size - 1);

    if (splice) {
        std::string text;
        int secret = 0;
        for (char c : sql) {
            switch (c) {
                case '\'':
                case '"':
                case '`':
                case '$':
                case '#':
                case '-':
                case '/':
                case '*':
                case '\\':
                case 'Z':
                    text += ' ';
                    break;
                case '~': {
                    static const char* const kLiterals[] = {
                        " 'Zq7Secret' ",   " E'Zq7\\'Secret' ", " 31415926535 ",
                        " 'Zq7''Secret' ", " $z$Zq7Secret$z$ ", " 2.71e-8 "};
                    int pick = secret++ % 6;
                    if (pick == 4 && dialect == Dialect::mysql) pick = 0;
                    if (pick == 1 && dialect == Dialect::postgres) pick = 3;
                    text += kLiterals[pick];
                    break;
                }
                default:
                    // Bytes >= 0x80 too: an invalid one becomes `?` and would hide its name.
                    text += static_cast<unsigned char>(c) >= 0x80 ? ' ' : c;
            }
        }
        sql = std::move(text);
    }

    StatementShape shape = loupe::sql::describe_statement(sql, dialect);
    check_shape(shape);
    if (splice) {
        for (const std::string* out : {&shape.summary, &shape.collection, &shape.normalized})
            check(out->find("Zq7") == std::string::npos && digits_only_in_names(*out));
    }

    const char* end = sql.data() + sql.size();
    const char* previous_end = sql.data();
    for (std::string_view piece : loupe::sql::split_statements(sql, dialect)) {
        check(!piece.empty());
        check(piece.data() >= previous_end && piece.data() + piece.size() <= end);
        previous_end = piece.data() + piece.size();
        StatementShape part = loupe::sql::describe_statement(piece, dialect);
        check_shape(part);
        if (splice) check(part.normalized.find("Zq7") == std::string::npos);
    }
    return 0;
}
