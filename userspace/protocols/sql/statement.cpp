// The SQL summariser: one pass of a hand-written tokenizer feeding a small state machine that
// knows where SQL names tables (FROM, JOIN, INTO, UPDATE, USING, TABLE...), and writes the
// normalised text as it goes. Literals never reach any output: the tokenizer turns them into one
// token kind, which is only ever written as `?`.
#include "protocols/sql/statement.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace loupe::sql {
namespace {

enum class Kind : std::uint8_t { word, quoted_name, literal, placeholder, punct, end };

struct Token {
    Kind kind = Kind::end;
    std::string_view text;
    bool space_before = false;
};

bool is_space(unsigned char c) {
    return c <= 0x20 || c == 0x7f;  // control bytes too: binary junk separates, never joins
}
bool is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}
bool is_alpha(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_name_char(unsigned char c) {
    return is_alpha(c) || is_digit(c) || c == '_' || c == '$' || c >= 0x80;
}
char upper(char c) {
    return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

class Lexer {
  public:
    Lexer(std::string_view text, Dialect dialect) : s_(text), dialect_(dialect) {}

    Token next() {
        Token t;
        t.space_before = skip_blanks();
        if (i_ >= s_.size()) return t;
        std::size_t start = i_;
        auto c = static_cast<unsigned char>(s_[i_]);
        t.kind = Kind::punct;
        if (c == '\'') {
            t.kind = Kind::literal;
            i_ = after_quoted(i_, '\'', dialect_ != Dialect::postgres);
        } else if (c == '"') {
            if (dialect_ == Dialect::mysql) {
                t.kind = Kind::literal;
                i_ = after_quoted(i_, '"', true);
            } else {
                t.kind = quoted_name(i_, '"');
            }
        } else if (c == '`') {
            t.kind = quoted_name(i_, '`');
        } else if (c == '$' && dialect_ != Dialect::mysql) {
            t.kind = dollar(start);
        } else if (c == '?') {
            t.kind = Kind::placeholder;
            ++i_;
        } else if (is_digit(c) || (c == '.' && i_ + 1 < s_.size() &&
                                   is_digit(static_cast<unsigned char>(s_[i_ + 1])))) {
            t.kind = Kind::literal;
            number();
        } else if (is_alpha(c) || c == '_' || c >= 0x80 ||
                   (c == '$' && dialect_ == Dialect::mysql)) {
            t.kind = word(start);
        } else {
            ++i_;
        }
        t.text = s_.substr(start, i_ - start);
        return t;
    }

  private:
    // Whitespace and comments; true when there were any.
    bool skip_blanks() {
        bool skipped = false;
        while (i_ < s_.size()) {
            auto c = static_cast<unsigned char>(s_[i_]);
            char next = i_ + 1 < s_.size() ? s_[i_ + 1] : '\0';
            if (is_space(c)) {
                ++i_;
            } else if ((c == '-' && next == '-') || (c == '#' && dialect_ != Dialect::postgres)) {
                std::size_t eol = s_.find('\n', i_);
                i_ = eol == std::string_view::npos ? s_.size() : eol + 1;
            } else if (c == '/' && next == '*' && dialect_ == Dialect::mysql &&
                       i_ + 2 < s_.size() && s_[i_ + 2] == '!') {
                // MySQL's executable comment, /*!80000 SET ... */: its text is SQL (which is
                // what mysqldump and some connectors send); the version and the ends are not.
                i_ += 3;
                while (i_ < s_.size() && is_digit(static_cast<unsigned char>(s_[i_])))
                    ++i_;
                ++executable_comments_;
            } else if (c == '*' && next == '/' && executable_comments_ > 0) {
                i_ += 2;
                --executable_comments_;
            } else if (c == '/' && next == '*') {
                // Nested as PostgreSQL does; MySQL does not nest, but dropping more never leaks.
                int depth = 1;
                i_ += 2;
                while (i_ < s_.size() && depth > 0) {
                    char a = s_[i_];
                    char b = i_ + 1 < s_.size() ? s_[i_ + 1] : '\0';
                    if (a == '/' && b == '*') {
                        ++depth;
                        i_ += 2;
                    } else if (a == '*' && b == '/') {
                        --depth;
                        i_ += 2;
                    } else {
                        ++i_;
                    }
                }
            } else {
                break;
            }
            skipped = true;
        }
        i_ = std::min(i_, s_.size());
        return skipped;
    }

    // The index after the closing quote of the quoted text opening at `open` (doubled quotes and,
    // if `backslash`, backslash escapes inside); the end of the text when it is unterminated.
    std::size_t after_quoted(std::size_t open, char quote, bool backslash) {
        std::size_t j = open + 1;
        while (j < s_.size()) {
            char c = s_[j];
            if (backslash && c == '\\') {
                j += 2;
            } else if (c == quote) {
                if (j + 1 < s_.size() && s_[j + 1] == quote) {
                    j += 2;
                } else {
                    return j + 1;
                }
            } else {
                ++j;
            }
        }
        unterminated_ = true;
        return s_.size();
    }

    // A quoted identifier; an unterminated one is taken for a literal: it swallows the rest of
    // the text, which may well be a value.
    Kind quoted_name(std::size_t open, char quote) {
        unterminated_ = false;
        i_ = after_quoted(open, quote, false);
        return unterminated_ ? Kind::literal : Kind::quoted_name;
    }

    // $1 (a placeholder), $tag$...$tag$ (a literal) or a lone `$`.
    Kind dollar(std::size_t start) {
        std::size_t j = start + 1;
        if (j < s_.size() && is_digit(static_cast<unsigned char>(s_[j]))) {
            while (j < s_.size() && is_digit(static_cast<unsigned char>(s_[j])))
                ++j;
            i_ = j;
            return Kind::placeholder;
        }
        while (j < s_.size() && is_name_char(static_cast<unsigned char>(s_[j])) && s_[j] != '$')
            ++j;
        if (j >= s_.size() || s_[j] != '$') {
            i_ = start + 1;
            return Kind::punct;
        }
        std::string_view tag = s_.substr(start, j - start + 1);
        std::size_t close = s_.find(tag, j + 1);
        i_ = close == std::string_view::npos ? s_.size() : close + tag.size();
        return Kind::literal;
    }

    // 1, 1.5, .5, 1e5, 1E-5, 0x1F, 0b101, 1_000, and junk glued to them (12abc): all one literal.
    void number() {
        std::size_t j = i_;
        bool hex = s_[j] == '0' && j + 1 < s_.size() && (s_[j + 1] == 'x' || s_[j + 1] == 'X');
        while (j < s_.size()) {
            auto c = static_cast<unsigned char>(s_[j]);
            if (is_alpha(c) || is_digit(c) || c == '_' || c == '.') {
                ++j;
            } else if ((c == '+' || c == '-') && !hex && (s_[j - 1] == 'e' || s_[j - 1] == 'E')) {
                ++j;
            } else {
                break;
            }
        }
        i_ = j;
    }

    // A name or keyword, or a prefixed string: E'...', X'...', B'...', N'...', U&'...', U&"...".
    Kind word(std::size_t start) {
        std::size_t j = start;
        while (j < s_.size() && is_name_char(static_cast<unsigned char>(s_[j])))
            ++j;
        i_ = j;
        if (j - start == 1 && j < s_.size()) {
            char p = upper(s_[start]);
            if (s_[j] == '\'' && (p == 'E' || p == 'X' || p == 'B' || p == 'N')) {
                i_ = after_quoted(j, '\'', p == 'E' || dialect_ != Dialect::postgres);
                return Kind::literal;
            }
            if (p == 'U' && j + 1 < s_.size() && s_[j] == '&') {
                if (s_[j + 1] == '\'') {
                    i_ = after_quoted(j + 1, '\'', false);
                    return Kind::literal;
                }
                if (s_[j + 1] == '"') return quoted_name(j + 1, '"');
            }
        }
        return Kind::word;
    }

    std::string_view s_;
    Dialect dialect_;
    std::size_t i_ = 0;
    bool unterminated_ = false;
    int executable_comments_ = 0;  // MySQL /*! ... */ open around the current text
};

// Words after which a name is no longer a table or its alias.
constexpr auto kClauseWords = std::to_array<std::string_view>(
    {"AND",         "AS",     "ASC",        "BETWEEN",   "BINARY",    "CASE",      "COLLATE",
     "CONFLICT",    "CROSS",  "CSV",        "DEFAULT",   "DELIMITER", "DESC",      "DO",
     "DUPLICATE",   "ELSE",   "END",        "EXCEPT",    "FETCH",     "FOR",       "FORCE",
     "FORMAT",      "FROM",   "FULL",       "GROUP",     "HAVING",    "HEADER",    "IGNORE",
     "IN",          "INNER",  "INTERSECT",  "INTO",      "IS",        "JOIN",      "KEY",
     "LATERAL",     "LEFT",   "LIKE",       "LIMIT",     "LOCK",      "MINUS",     "NATURAL",
     "NOT",         "NOWAIT", "OFFSET",     "ON",        "ONLY",      "OR",        "ORDER",
     "OUTER",       "OVER",   "OVERRIDING", "PARTITION", "QUALIFY",   "RETURNING", "RIGHT",
     "SELECT",      "SET",    "SHARE",      "SKIP",      "STDIN",     "STDOUT",    "STRAIGHT_JOIN",
     "TABLESAMPLE", "THEN",   "TO",         "UNION",     "UPDATE",    "USE",       "USING",
     "VALUES",      "WHEN",   "WHERE",      "WINDOW",    "WITH",      "WRITE"});

// Words between a verb (or FROM, INTO...) and its table that are not the table.
constexpr auto kTableModifiers = std::to_array<std::string_view>({"ANALYZE",
                                                                  "CONCURRENTLY",
                                                                  "DELAYED",
                                                                  "EXISTS",
                                                                  "EXTENDED",
                                                                  "FREEZE",
                                                                  "FULL",
                                                                  "HIGH_PRIORITY",
                                                                  "IF",
                                                                  "IGNORE",
                                                                  "INTO",
                                                                  "LATERAL",
                                                                  "LOCAL",
                                                                  "LOW_PRIORITY",
                                                                  "MATERIALIZED",
                                                                  "NOT",
                                                                  "NO_WRITE_TO_BINLOG",
                                                                  "ONLY",
                                                                  "QUICK",
                                                                  "SKIP_LOCKED",
                                                                  "TABLE",
                                                                  "TABLES",
                                                                  "VERBOSE",
                                                                  "VIEW",
                                                                  "INDEX",
                                                                  "SEQUENCE",
                                                                  "FROM"});

// CREATE/DROP/ALTER objects that become part of the operation ("CREATE TABLE").
constexpr auto kObjectKinds = std::to_array<std::string_view>(
    {"DATABASE", "EXTENSION", "FUNCTION", "INDEX", "PROCEDURE", "ROLE", "SCHEMA", "SEQUENCE",
     "TABLE", "TRIGGER", "TYPE", "USER", "VIEW", "MATERIALIZED"});

// Whether `w` is one of `Words`: a binary search of a sorted copy, made once per list.
template <const auto& Words>
bool contains(std::string_view w) {
    static const auto sorted = [] {
        auto copy = Words;
        std::sort(copy.begin(), copy.end());
        return copy;
    }();
    return std::binary_search(sorted.begin(), sorted.end(), w);
}

// Verbs that are operations as they are written.
constexpr auto kPlainVerbs = std::to_array<std::string_view>(
    {"SELECT",   "INSERT",     "UPDATE",    "DELETE",   "MERGE",   "REPLACE", "VALUES",
     "COMMIT",   "ROLLBACK",   "SAVEPOINT", "RELEASE",  "SET",     "SHOW",    "RESET",
     "CALL",     "DO",         "EXPLAIN",   "ANALYZE",  "VACUUM",  "COPY",    "PREPARE",
     "EXECUTE",  "DEALLOCATE", "DECLARE",   "FETCH",    "MOVE",    "CLOSE",   "LISTEN",
     "NOTIFY",   "UNLISTEN",   "LOCK",      "TRUNCATE", "GRANT",   "REVOKE",  "USE",
     "DESCRIBE", "CHECKPOINT", "DISCARD",   "REFRESH",  "CLUSTER", "REINDEX", "COMMENT",
     "LOAD",     "OPTIMIZE",   "FLUSH",     "KILL"});

// Verbs whose next name (after kTableModifiers) is a table, or a list of tables.
constexpr auto kTableVerbs = std::to_array<std::string_view>(
    {"TRUNCATE", "LOCK", "VACUUM", "ANALYZE", "CLUSTER", "REINDEX", "OPTIMIZE", "DESCRIBE", "COPY",
     "REFRESH", "UPDATE", "INSERT", "REPLACE"});

class Describer {
  public:
    Describer(std::string_view sql, Dialect dialect) : lexer_(sql, dialect) {
        shape_.normalized.reserve(std::min(sql.size() + 8, kMaxNormalized));
    }

    StatementShape run() {
        start();
        while (peek().kind != Kind::end)
            step();
        if (comma_held_) write(held_comma_);
        if (shape_.operation.empty()) shape_.operation = "_OTHER";
        if (several_tables_) shape_.collection.clear();
        if (shape_.summary.empty()) shape_.summary = shape_.operation.substr(0, kMaxSummary);
        repair_utf8(shape_.summary);
        repair_utf8(shape_.collection);
        repair_utf8(shape_.normalized);
        return std::move(shape_);
    }

  private:
    // --- tokens: every token taken is written to the normalised text, once, in order.
    const Token& peek(std::size_t k = 0) {
        while (ahead_ <= k)
            buffer_[(head_ + ahead_++) % buffer_.size()] = lexer_.next();
        return buffer_[(head_ + k) % buffer_.size()];
    }
    Token take() {
        peek();
        Token t = buffer_[head_];
        head_ = (head_ + 1) % buffer_.size();
        --ahead_;
        normalize(t);
        if (t.kind == Kind::punct && t.text == "(") {
            ++depth_;
            if (depth_ < select_at_.size()) select_at_[depth_] = false;
        } else if (t.kind == Kind::punct && t.text == ")") {
            if (depth_ > 0) --depth_;
        }
        previous_ = keyword(t);
        previous_kind_ = t.kind;
        last_punct_ = t.kind == Kind::punct ? t.text[0] : '\0';
        return t;
    }
    // The word upper-cased if it may be a keyword (short, plain); else empty.
    std::string_view keyword(const Token& t) {
        if (t.kind != Kind::word || t.text.size() > 16) return {};
        // Two buffers in turn: step() compares the previous keyword after taking the next.
        char* out = previous_.data() == scratch_a_.data() ? scratch_b_.data() : scratch_a_.data();
        for (std::size_t i = 0; i < t.text.size(); ++i)
            out[i] = upper(t.text[i]);
        return {out, t.text.size()};
    }
    // Valid until the next peek_keyword().
    std::string_view peek_keyword(std::size_t k = 0) {
        const Token& t = peek(k);
        if (t.kind != Kind::word || t.text.size() > 16) return {};
        auto& out = scratch_peek_;
        for (std::size_t i = 0; i < t.text.size(); ++i)
            out[i] = upper(t.text[i]);
        return {out.data(), t.text.size()};
    }
    bool peek_is(char c, std::size_t k = 0) {
        const Token& t = peek(k);
        return t.kind == Kind::punct && t.text.size() == 1 && t.text[0] == c;
    }
    bool select_here() const { return depth_ < select_at_.size() && select_at_[depth_]; }
    void set_select_here() {
        if (depth_ < select_at_.size()) select_at_[depth_] = true;
    }

    // --- the normalised text, with IN lists of literals collapsed to their first element.
    void normalize(const Token& t) {
        switch (in_list_) {
            case InList::after_in:
                in_list_ = t.kind == Kind::punct && t.text == "(" ? InList::open : InList::none;
                break;
            case InList::open:
                in_list_ = is_value(t) ? InList::first : InList::none;
                break;
            case InList::first:
                if (t.kind == Kind::punct && t.text == ",") {
                    in_list_ = InList::comma;
                    held_comma_ = t;
                    comma_held_ = true;
                    return;
                }
                in_list_ = InList::none;
                break;
            case InList::comma:
                comma_held_ = false;
                if (is_value(t)) {
                    in_list_ = InList::first;
                    return;
                }
                write(held_comma_);
                in_list_ = InList::none;
                break;
            case InList::none:
                break;
        }
        write(t);
        if (in_list_ == InList::none && t.kind == Kind::word && t.text.size() == 2 &&
            upper(t.text[0]) == 'I' && upper(t.text[1]) == 'N') {
            in_list_ = InList::after_in;
        }
    }
    static bool is_value(const Token& t) {
        return t.kind == Kind::literal || t.kind == Kind::placeholder;
    }
    void write(const Token& t) {
        if (normalized_full_) return;
        std::string_view text = t.kind == Kind::literal ? std::string_view("?") : t.text;
        auto& out = shape_.normalized;
        bool space = t.space_before && !out.empty();
        if (out.size() + (space ? 1 : 0) + text.size() > kMaxNormalized) {
            normalized_full_ = true;  // cut at a token boundary: never half a token
            return;
        }
        if (space) out += ' ';
        out += text;
    }

    // --- the operation and the summary.
    void start() {
        while (peek_is('('))
            take();
        std::array<char, 17> verb_text{};
        std::string_view peeked = peek_keyword();
        std::copy(peeked.begin(), peeked.end(), verb_text.begin());
        std::string_view verb(verb_text.data(), peeked.size());
        if (verb.empty()) {
            shape_.operation = "_OTHER";
            return;
        }
        if (verb == "WITH") {
            with_ = true;
            take();
            if (peek_keyword() == "RECURSIVE") take();
            return;  // the operation is the verb after the common table expressions
        }
        take();
        if (verb == "BEGIN" || (verb == "START" && peek_keyword() == "TRANSACTION")) {
            set_operation("BEGIN");
        } else if (verb == "END" || verb == "ABORT") {
            set_operation(verb == "END" ? "COMMIT" : "ROLLBACK");
        } else if (verb == "TABLE") {
            set_operation("SELECT");
            expect_table(false, false);
        } else if (verb == "DESC") {
            set_operation("DESCRIBE");
            expect_table(false, false);
        } else if (verb == "CREATE" || verb == "DROP" || verb == "ALTER") {
            ddl(verb);
        } else if (contains<kPlainVerbs>(verb)) {
            set_operation(verb);
            main_verb(verb);
        } else {
            set_operation("_OTHER");
        }
    }

    void set_operation(std::string_view op) {
        shape_.operation.assign(op);
        add_summary(op);
    }

    // What follows the statement's own verb.
    void main_verb(std::string_view verb) {
        if (verb == "SELECT" || verb == "DELETE") set_select_here();
        if (verb == "UPDATE") set_select_here();  // PostgreSQL's UPDATE ... FROM
        if (verb == "CALL") expect_table(false, false, /*is_table=*/false);
        if (verb == "GRANT" || verb == "REVOKE") grant_ = true;
        if (contains<kTableVerbs>(verb)) {
            bool list = verb != "INSERT" && verb != "REPLACE" && verb != "COPY";
            expect_table(list, false);
            options_in_parens_ =
                verb == "VACUUM" || verb == "ANALYZE" || verb == "CLUSTER" || verb == "REINDEX";
        }
    }

    // CREATE [OR REPLACE] [TEMP...] [UNIQUE] <kind> ...: "CREATE TABLE" and its table.
    void ddl(std::string_view verb) {
        std::array<char, 40> op{};
        std::size_t n = verb.size();
        std::copy(verb.begin(), verb.end(), op.begin());
        for (int skipped = 0; skipped < 6; ++skipped) {
            std::string_view w = peek_keyword();
            if (w == "OR" || w == "REPLACE" || w == "TEMP" || w == "TEMPORARY" || w == "UNLOGGED" ||
                w == "GLOBAL" || w == "LOCAL" || w == "UNIQUE") {
                take();
                continue;
            }
            break;
        }
        std::array<char, 17> kind_text{};
        std::string_view peeked = peek_keyword();
        std::copy(peeked.begin(), peeked.end(), kind_text.begin());
        std::string_view kind(kind_text.data(), peeked.size());
        if (contains<kObjectKinds>(kind)) {
            take();
            if (kind == "MATERIALIZED" && peek_keyword() == "VIEW") {
                take();
                kind = "MATERIALIZED VIEW";
            }
            op[n++] = ' ';
            std::copy(kind.begin(), kind.end(), op.begin() + static_cast<std::ptrdiff_t>(n));
            n += kind.size();
        }
        set_operation({op.data(), n});
        if (kind == "TABLE" || kind == "VIEW" || kind == "SEQUENCE" ||
            kind == "MATERIALIZED VIEW") {
            expect_table(verb == "DROP", false);
        } else if (kind == "INDEX") {
            index_ = true;  // the table follows ON
        }
    }

    void expect_table(bool list, bool function_check, bool is_table = true) {
        expect_ = true;
        list_ = list;
        function_check_ = function_check;
        target_is_table_ = is_table;
    }

    // A verb inside the statement (a subquery, INSERT ... SELECT, a CTE's body, the main verb of
    // a WITH): its name enters the summary before the first table it names.
    void inner_verb(std::string_view verb) {
        if (with_ && shape_.operation.empty() && depth_ == 0) {
            shape_.operation.assign(verb);
        }
        pending_verb_ = verb == "SELECT"   ? "SELECT"
                        : verb == "INSERT" ? "INSERT"
                        : verb == "UPDATE" ? "UPDATE"
                        : verb == "DELETE" ? "DELETE"
                        : verb == "MERGE"  ? "MERGE"
                                           : "REPLACE";
        if (verb == "SELECT" || verb == "DELETE" || verb == "UPDATE") set_select_here();
        if (verb == "UPDATE") expect_table(true, false);
        if (verb == "INSERT" || verb == "REPLACE") expect_table(false, false);
    }

    void step() {
        std::string_view prev = previous_;
        Kind prev_kind = previous_kind_;
        char last_punct = last_punct_;
        std::string_view kw = peek_keyword();
        const Token& t = peek();

        if (expect_) {
            if (t.kind == Kind::word && contains<kTableModifiers>(kw)) {
                take();
                return;
            }
            if (options_in_parens_ && peek_is('(')) {
                skip_parens();
                return;
            }
            if ((t.kind == Kind::word && !contains<kClauseWords>(kw)) ||
                t.kind == Kind::quoted_name) {
                table_name();
                return;
            }
            expect_ = false;
        }

        if (t.kind != Kind::word) {
            take();
            return;
        }
        // A common table expression's name: WITH name [(columns)] AS (...).
        if (with_ && shape_.operation.empty() && depth_ == 0 &&
            (prev == "WITH" || prev == "RECURSIVE" || last_punct == ',') &&
            !contains<kClauseWords>(kw)) {
            if (cte_count_ < ctes_.size()) ctes_[cte_count_++] = t.text;
            take();
            return;
        }
        take();
        bool after_open = prev_kind == Kind::punct && last_punct == '(';
        bool after_close = prev_kind == Kind::punct && last_punct == ')';
        bool statement_start = after_open || prev == "AS" || prev == "EXPLAIN" ||
                               prev == "ANALYZE" || prev == "VERBOSE" ||
                               (with_ && depth_ == 0 && after_close);
        if (kw == "SELECT") {
            if (!grant_) inner_verb(kw);
        } else if ((kw == "INSERT" || kw == "UPDATE" || kw == "DELETE" || kw == "MERGE" ||
                    kw == "REPLACE") &&
                   statement_start && !grant_ && !peek_is('(')) {
            inner_verb(kw);
        } else if (kw == "VALUES" && with_ && depth_ == 0 && shape_.operation.empty()) {
            shape_.operation = "VALUES";
        } else if (kw == "FROM") {
            if (select_here() && prev != "DISTINCT") expect_table(true, true);
        } else if (kw == "JOIN" || kw == "STRAIGHT_JOIN") {
            expect_table(false, true);
        } else if (kw == "INTO") {
            expect_table(false, false);
        } else if (kw == "USING") {
            if (peek().kind == Kind::word || peek().kind == Kind::quoted_name)
                expect_table(true, true);
        } else if (kw == "ON" && index_ && depth_ == 0) {
            index_ = false;
            expect_table(false, false);
        }
    }

    void skip_parens() {
        std::size_t depth = depth_;
        take();
        while (peek().kind != Kind::end && depth_ > depth)
            take();
    }

    // A possibly schema-qualified table name, its alias, and a comma if a list goes on.
    void table_name() {
        std::array<char, 160> name{};
        std::size_t n = 0;
        auto append_part = [&](const Token& part) {
            std::string_view text = part.text;
            if (part.kind == Kind::quoted_name) {
                std::size_t quote = text.find_first_of("\"`");  // U&"..." starts with U&
                char q = text[quote];
                text = text.substr(quote + 1, text.size() - quote - 2);
                for (std::size_t i = 0; i < text.size() && n < name.size(); ++i) {
                    name[n++] = text[i];
                    if (text[i] == q) ++i;  // a doubled quote is one quote
                }
            } else {
                for (std::size_t i = 0; i < text.size() && n < name.size(); ++i)
                    name[n++] = text[i];
            }
        };
        append_part(take());
        std::size_t parts = 1;
        while (peek_is('.') && (peek(1).kind == Kind::word || peek(1).kind == Kind::quoted_name)) {
            take();
            if (n < name.size()) name[n++] = '.';
            append_part(take());
            ++parts;
        }
        bool function = function_check_ && peek_is('(');
        if (!function) add_table({name.data(), std::min(n, kMaxName)}, parts == 1);

        // alias: [AS] name
        if (peek_keyword() == "AS") {
            take();
            if ((peek().kind == Kind::word && !contains<kClauseWords>(peek_keyword())) ||
                peek().kind == Kind::quoted_name) {
                take();
            }
        } else if (!function &&
                   ((peek().kind == Kind::word && !contains<kClauseWords>(peek_keyword())) ||
                    peek().kind == Kind::quoted_name)) {
            take();
        }
        if (list_ && peek_is(',')) {
            take();
            return;  // still expecting a table
        }
        expect_ = false;
    }

    void add_table(std::string_view name, bool unqualified) {
        if (name.empty()) return;
        if (unqualified) {
            for (std::size_t i = 0; i < cte_count_; ++i) {
                if (equal_ignoring_case(ctes_[i], name)) return;
            }
        }
        if (!pending_verb_.empty()) {
            add_summary(pending_verb_);
            pending_verb_ = {};
        }
        add_summary(name);
        if (!target_is_table_) return;
        if (!any_table_) {
            shape_.collection.assign(name);
            any_table_ = true;
        } else if (shape_.collection != name) {
            several_tables_ = true;
        }
    }

    static bool equal_ignoring_case(std::string_view a, std::string_view b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i) {
            if (upper(a[i]) != upper(b[i])) return false;
        }
        return true;
    }

    void add_summary(std::string_view item) {
        auto& s = shape_.summary;
        if (summary_full_) return;
        std::size_t need = (s.empty() ? 0 : 1) + item.size();
        if (s.size() + need > kMaxSummary) {
            summary_full_ = true;  // whole names only, as OpenTelemetry asks
            return;
        }
        if (!s.empty()) s += ' ';
        s += item;
    }

    // Bytes >= 0x80 pass the tokenizer as name characters; what is not UTF-8 becomes `?` (same
    // length, so the bounds hold), as label values and JSON must be UTF-8.
    static void repair_utf8(std::string& s) {
        // The common case, all ASCII, checked eight bytes at a time.
        std::uint64_t high = 0;
        std::size_t at = 0;
        for (; at + 8 <= s.size(); at += 8) {
            std::uint64_t word = 0;
            std::memcpy(&word, s.data() + at, 8);
            high |= word;
        }
        for (; at < s.size(); ++at)
            high |= static_cast<unsigned char>(s[at]);
        if ((high & 0x8080808080808080ULL) == 0) return;
        std::size_t i = 0;
        while (i < s.size()) {
            auto c = static_cast<unsigned char>(s[i]);
            std::size_t len = c < 0x80           ? 1
                              : (c >> 5) == 0x6  ? 2
                              : (c >> 4) == 0xE  ? 3
                              : (c >> 3) == 0x1E ? 4
                                                 : 0;
            bool ok = len > 0 && i + len <= s.size();
            for (std::size_t k = 1; ok && k < len; ++k)
                ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
            if (ok && len == 2) ok = c >= 0xC2;
            if (ok && len == 3) {
                auto c1 = static_cast<unsigned char>(s[i + 1]);
                ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
            }
            if (ok && len == 4) {
                auto c1 = static_cast<unsigned char>(s[i + 1]);
                ok = c <= 0xF4 && !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
            }
            if (!ok) {
                s[i++] = '?';
                continue;
            }
            i += len;
        }
    }

    static constexpr std::size_t kMaxName = 128;
    enum class InList : std::uint8_t { none, after_in, open, first, comma };

    Lexer lexer_;
    std::array<Token, 4> buffer_{};
    std::size_t head_ = 0;
    std::size_t ahead_ = 0;
    std::array<char, 17> scratch_a_{};
    std::array<char, 17> scratch_b_{};
    std::array<char, 17> scratch_peek_{};
    std::string_view previous_;
    Kind previous_kind_ = Kind::end;
    char last_punct_ = 0;

    StatementShape shape_;
    InList in_list_ = InList::none;
    Token held_comma_;
    bool comma_held_ = false;
    bool normalized_full_ = false;
    bool summary_full_ = false;

    std::size_t depth_ = 0;
    std::array<bool, 64> select_at_{};  // a SELECT/DELETE/UPDATE at this depth: FROM names tables
    bool with_ = false;
    bool grant_ = false;
    bool index_ = false;
    std::array<std::string_view, 16> ctes_{};
    std::size_t cte_count_ = 0;
    std::string_view pending_verb_;

    bool expect_ = false;
    bool list_ = false;
    bool function_check_ = false;
    bool target_is_table_ = true;
    bool options_in_parens_ = false;
    bool any_table_ = false;
    bool several_tables_ = false;
};

}  // namespace

StatementShape describe_statement(std::string_view sql, Dialect dialect) {
    return Describer(sql, dialect).run();
}

StatementShape describe_statement(std::string_view sql) {
    return describe_statement(sql, Dialect::any);
}

std::vector<std::string_view> split_statements(std::string_view sql, Dialect dialect) {
    std::vector<std::string_view> statements;
    Lexer lexer(sql, dialect);
    const char* first = nullptr;
    const char* last = nullptr;
    for (Token t = lexer.next(); t.kind != Kind::end; t = lexer.next()) {
        if (t.kind == Kind::punct && t.text == ";") {
            if (first != nullptr)
                statements.emplace_back(first, static_cast<std::size_t>(last - first));
            first = nullptr;
            continue;
        }
        if (first == nullptr) first = t.text.data();
        last = t.text.data() + t.text.size();
    }
    if (first != nullptr) statements.emplace_back(first, static_cast<std::size_t>(last - first));
    return statements;
}

std::vector<std::string_view> split_statements(std::string_view sql) {
    return split_statements(sql, Dialect::any);
}

}  // namespace loupe::sql
