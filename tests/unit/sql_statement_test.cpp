// The SQL summariser (protocols/sql/statement.h): operations, OpenTelemetry query summaries,
// collections, normalised text and statement splitting, on ordinary, dialect-specific and hostile
// text. The rule under every test: no literal of the input reaches any output.
#include "protocols/sql/statement.h"

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace loupe::sql {
namespace {

using Statements = std::vector<std::string_view>;

struct Case {
    std::string_view sql;
    std::string_view operation;
    std::string_view summary;
    std::string_view collection;
};

// Fails if any output of `shape` contains `secret`.
void expect_no_secret(const StatementShape& shape, std::string_view secret, std::string_view sql) {
    for (const std::string* out :
         {&shape.operation, &shape.summary, &shape.collection, &shape.normalized}) {
        EXPECT_EQ(out->find(secret), std::string::npos)
            << "secret '" << secret << "' leaked into '" << *out << "' from: " << sql;
    }
}

void expect_bounds(const StatementShape& shape) {
    EXPECT_LE(shape.summary.size(), kMaxSummary);
    EXPECT_LE(shape.normalized.size(), kMaxNormalized);
    EXPECT_FALSE(shape.operation.empty());
}

TEST(SqlStatement, OperationsSummariesAndCollections) {
    const Case cases[] = {
        {"SELECT abalance FROM pgbench_accounts WHERE aid = $1", "SELECT",
         "SELECT pgbench_accounts", "pgbench_accounts"},
        {"select * from songs s join artists a on s.artist_id = a.id", "SELECT",
         "SELECT songs artists", ""},
        {"INSERT INTO shipping_details (order_id, address) SELECT order_id, address FROM orders "
         "WHERE order_id = ?",
         "INSERT", "INSERT shipping_details SELECT orders", ""},
        {"SELECT order_date FROM (SELECT * FROM orders o JOIN customers c ON o.customer_id = "
         "c.customer_id)",
         "SELECT", "SELECT SELECT orders customers", ""},
        {"UPDATE pgbench_tellers SET tbalance = tbalance + 5 WHERE tid = 7", "UPDATE",
         "UPDATE pgbench_tellers", "pgbench_tellers"},
        {"DELETE FROM public.sessions WHERE expires < now()", "DELETE", "DELETE public.sessions",
         "public.sessions"},
        {"SELECT 1", "SELECT", "SELECT", ""},
        {"  \n\t select now()", "SELECT", "SELECT", ""},
        {"BEGIN", "BEGIN", "BEGIN", ""},
        {"begin isolation level repeatable read", "BEGIN", "BEGIN", ""},
        {"START TRANSACTION READ ONLY", "BEGIN", "BEGIN", ""},
        {"COMMIT", "COMMIT", "COMMIT", ""},
        {"END", "COMMIT", "COMMIT", ""},
        {"ROLLBACK TO SAVEPOINT s1", "ROLLBACK", "ROLLBACK", ""},
        {"ABORT", "ROLLBACK", "ROLLBACK", ""},
        {"SET search_path = 'app'", "SET", "SET", ""},
        {"SHOW TABLES FROM db", "SHOW", "SHOW", ""},
        {"CALL refresh_totals(42)", "CALL", "CALL refresh_totals", ""},
        {"EXPLAIN ANALYZE SELECT * FROM t WHERE x = 1", "EXPLAIN", "EXPLAIN SELECT t", "t"},
        {"COPY pgbench_accounts FROM STDIN", "COPY", "COPY pgbench_accounts", "pgbench_accounts"},
        {"COPY (SELECT * FROM t) TO STDOUT WITH CSV", "COPY", "COPY SELECT t", "t"},
        {"PREPARE q (int) AS SELECT * FROM users WHERE id = $1", "PREPARE", "PREPARE SELECT users",
         "users"},
        {"EXECUTE q(5)", "EXECUTE", "EXECUTE", ""},
        {"DEALLOCATE q", "DEALLOCATE", "DEALLOCATE", ""},
        {"VACUUM (VERBOSE, ANALYZE) pgbench_history", "VACUUM", "VACUUM pgbench_history",
         "pgbench_history"},
        {"VACUUM", "VACUUM", "VACUUM", ""},
        {"TRUNCATE TABLE a, b", "TRUNCATE", "TRUNCATE a b", ""},
        {"TRUNCATE pgbench_history", "TRUNCATE", "TRUNCATE pgbench_history", "pgbench_history"},
        {"CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, c int REFERENCES customers(id))",
         "CREATE TABLE", "CREATE TABLE orders", "orders"},
        {"create temporary table tmp_x as select * from src", "CREATE TABLE",
         "CREATE TABLE tmp_x SELECT src", ""},
        {"DROP TABLE IF EXISTS a, b CASCADE", "DROP TABLE", "DROP TABLE a b", ""},
        {"ALTER TABLE orders ADD COLUMN note text DEFAULT 'x'", "ALTER TABLE", "ALTER TABLE orders",
         "orders"},
        {"CREATE UNIQUE INDEX CONCURRENTLY idx_a ON accounts (email)", "CREATE INDEX",
         "CREATE INDEX accounts", "accounts"},
        {"CREATE MATERIALIZED VIEW mv AS SELECT * FROM t", "CREATE MATERIALIZED VIEW",
         "CREATE MATERIALIZED VIEW mv SELECT t", ""},
        {"CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ SELECT 1 FROM secret_t $$ LANGUAGE sql",
         "CREATE FUNCTION", "CREATE FUNCTION", ""},
        {"CREATE DATABASE shop", "CREATE DATABASE", "CREATE DATABASE", ""},
        {"GRANT SELECT, UPDATE ON accounts TO app", "GRANT", "GRANT", ""},
        {"WITH recent AS (SELECT * FROM orders WHERE ts > now()) SELECT * FROM recent JOIN users u "
         "ON u.id = recent.user_id",
         "SELECT", "SELECT orders SELECT users", ""},
        {"WITH RECURSIVE t(n) AS (VALUES (1) UNION ALL SELECT n+1 FROM t WHERE n < 100) SELECT "
         "sum(n) FROM t",
         "SELECT", "SELECT", ""},
        {"WITH moved AS (DELETE FROM queue WHERE id = 3 RETURNING *) INSERT INTO done SELECT * "
         "FROM moved",
         "INSERT", "DELETE queue INSERT done", ""},
        {"WITH x AS (SELECT 1) UPDATE t SET a = 1 FROM x", "UPDATE", "UPDATE t", "t"},
        {"INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = excluded.a", "INSERT",
         "INSERT t", "t"},
        {"INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 2", "INSERT", "INSERT t", "t"},
        {"INSERT IGNORE INTO `shop`.`orders` VALUES (1)", "INSERT", "INSERT shop.orders",
         "shop.orders"},
        {"insert t values (1)", "INSERT", "INSERT t", "t"},
        {"REPLACE INTO kv (k, v) VALUES ('a', 'b')", "REPLACE", "REPLACE kv", "kv"},
        {"SELECT * FROM t FOR UPDATE", "SELECT", "SELECT t", "t"},
        {"SELECT * FROM t1, t2 AS b, schema1.t3 c WHERE t1.x = b.y", "SELECT",
         "SELECT t1 t2 schema1.t3", ""},
        {"SELECT * FROM t x, t y", "SELECT", "SELECT t t", "t"},
        {"SELECT EXTRACT(YEAR FROM ts), substring(s FROM 2 FOR 3) FROM events", "SELECT",
         "SELECT events", "events"},
        {"SELECT * FROM a WHERE b IS DISTINCT FROM c", "SELECT", "SELECT a", "a"},
        {"SELECT * FROM generate_series(1, 10) g JOIN t ON t.id = g", "SELECT", "SELECT t", "t"},
        {"SELECT * FROM \"Order Items\" oi", "SELECT", "SELECT Order Items", "Order Items"},
        {"SELECT \"auth_user\".\"id\" FROM \"auth_user\" WHERE \"auth_user\".\"username\" = %s",
         "SELECT", "SELECT auth_user", "auth_user"},
        {"SELECT * FROM a WHERE id IN (SELECT a_id FROM b)", "SELECT", "SELECT a SELECT b", ""},
        {"SELECT * FROM a UNION SELECT * FROM b", "SELECT", "SELECT a SELECT b", ""},
        {"(SELECT 1 FROM a) UNION (SELECT 2 FROM b)", "SELECT", "SELECT a SELECT b", ""},
        {"DELETE t1 FROM t1 JOIN t2 ON t1.id = t2.id", "DELETE", "DELETE t1 t2", ""},
        {"DELETE FROM a USING b WHERE a.id = b.id", "DELETE", "DELETE a b", ""},
        {"UPDATE a JOIN b ON a.id = b.id SET a.x = b.x", "UPDATE", "UPDATE a b", ""},
        {"MERGE INTO target t USING source s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v "
         "WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)",
         "MERGE", "MERGE target source", ""},
        {"LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE", "LOCK", "LOCK accounts", "accounts"},
        {"TABLE users", "SELECT", "SELECT users", "users"},
        {"DESC users", "DESCRIBE", "DESCRIBE users", "users"},
        {"USE shop", "USE", "USE", ""},
        {"LISTEN channel", "LISTEN", "LISTEN", ""},
        {"frobnicate the database", "_OTHER", "_OTHER", ""},
        {"", "_OTHER", "_OTHER", ""},
        {"/* only a comment */", "_OTHER", "_OTHER", ""},
        {"42", "_OTHER", "_OTHER", ""},
        {"/* app:checkout */ SELECT * FROM carts -- trailing", "SELECT", "SELECT carts", "carts"},
    };
    for (const Case& c : cases) {
        StatementShape shape = describe_statement(c.sql);
        EXPECT_EQ(shape.operation, c.operation) << c.sql;
        EXPECT_EQ(shape.summary, c.summary) << c.sql;
        EXPECT_EQ(shape.collection, c.collection) << c.sql;
        expect_bounds(shape);
    }
}

TEST(SqlStatement, NormalizedReplacesEveryLiteral) {
    const std::pair<std::string_view, std::string_view> cases[] = {
        {"SELECT * FROM t WHERE a = 'x' AND b = 42", "SELECT * FROM t WHERE a = ? AND b = ?"},
        {"SELECT   *\n\tFROM t  WHERE a=1", "SELECT * FROM t WHERE a=?"},
        {"SELECT 1.5, .5, 1e5, 1E-5, 0x1F, 0b101, 1_000", "SELECT ?, ?, ?, ?, ?, ?, ?"},
        {"SELECT E'it\\'s', X'1F', B'0101', N'n', U&'\\0041'", "SELECT ?, ?, ?, ?, ?"},
        {"SELECT 'it''s' || 'x'", "SELECT ? || ?"},
        {"SELECT $$dollar 'quoted'$$, $tag$ with $$ inside $tag$", "SELECT ?, ?"},
        {"SELECT * FROM t WHERE id = $1 AND v = ?", "SELECT * FROM t WHERE id = $1 AND v = ?"},
        {"SELECT * FROM t WHERE id IN (1, 2, 3, 4)", "SELECT * FROM t WHERE id IN (?)"},
        {"SELECT * FROM t WHERE id in ($1,$2,$3)", "SELECT * FROM t WHERE id in ($1)"},
        {"SELECT * FROM t WHERE id IN (1, x, 2)", "SELECT * FROM t WHERE id IN (?, x, ?)"},
        {"SELECT * FROM t WHERE id IN (SELECT 1)", "SELECT * FROM t WHERE id IN (SELECT ?)"},
        {"SELECT a IS NULL, TRUE, false", "SELECT a IS NULL, TRUE, false"},
        {"SELECT -5, a-1, '2024-01-01'::date", "SELECT -?, a-?, ?::date"},
        {"SELECT /* c */ 1 -- x\n FROM t", "SELECT ? FROM t"},
        {"SELECT \"col\" FROM `tbl`", "SELECT \"col\" FROM `tbl`"},
        {"SELECT t1.c2 FROM t1", "SELECT t1.c2 FROM t1"},
        {"INSERT INTO t VALUES (1, 'a'), (2, 'b')", "INSERT INTO t VALUES (?, ?), (?, ?)"},
        {"SELECT interval '1 day', DATE '2024-01-01'", "SELECT interval ?, DATE ?"},
    };
    for (const auto& [sql, normalized] : cases) {
        EXPECT_EQ(describe_statement(sql).normalized, normalized) << sql;
    }
}

TEST(SqlStatement, DialectsDisagreeOnBackslashesAndDoubleQuotes) {
    // PostgreSQL: a backslash is an ordinary character of '...'; the string ends at the quote.
    std::string_view pg = R"(SELECT 'C:\' AS path, 'psecret' AS p FROM t)";
    StatementShape shape = describe_statement(pg, Dialect::postgres);
    EXPECT_EQ(shape.normalized, "SELECT ? AS path, ? AS p FROM t");
    EXPECT_EQ(shape.summary, "SELECT t");
    // MySQL: \' is an escaped quote, and "..." is a string.
    std::string_view my = R"(SELECT * FROM t WHERE a = 'it\'s' AND b = "msecret" AND c = "x\"y")";
    shape = describe_statement(my, Dialect::mysql);
    EXPECT_EQ(shape.normalized, "SELECT * FROM t WHERE a = ? AND b = ? AND c = ?");
    expect_no_secret(shape, "msecret", my);
    // MySQL: $ is a name character, # starts a comment; PostgreSQL: # is an operator.
    EXPECT_EQ(describe_statement("SELECT $a FROM t # note 'x'", Dialect::mysql).normalized,
              "SELECT $a FROM t");
    EXPECT_EQ(describe_statement("SELECT a # b FROM t", Dialect::postgres).normalized,
              "SELECT a # b FROM t");
    // MySQL's executable comments hold SQL; elsewhere, and optimizer hints, are comments.
    shape = describe_statement("/*!40101 SET NAMES utf8mb4 */", Dialect::mysql);
    EXPECT_EQ(shape.operation, "SET");
    EXPECT_EQ(shape.normalized, "SET NAMES utf8mb4");
    shape = describe_statement(
        "SELECT /*+ MAX_EXECUTION_TIME(1000) */ a FROM t /*!50000 WHERE b = 'x' */",
        Dialect::mysql);
    EXPECT_EQ(shape.normalized, "SELECT a FROM t WHERE b = ?");
    EXPECT_EQ(describe_statement("/*!40101 SET NAMES utf8mb4 */", Dialect::postgres).operation,
              "_OTHER");
    // The default: backslash escapes, "..." a name.
    shape = describe_statement(R"(SELECT "x" FROM t WHERE a = 'it\'s; 1')");
    EXPECT_EQ(shape.normalized, "SELECT \"x\" FROM t WHERE a = ?");
}

TEST(SqlStatement, NeverALiteralInHostileText) {
    constexpr Dialect kAny = Dialect::any;
    constexpr Dialect kPg = Dialect::postgres;
    constexpr Dialect kMy = Dialect::mysql;
    struct Hostile {
        std::string_view sql;
        std::string_view secret;
        std::vector<Dialect> dialects = {kAny, kPg, kMy};  // where the secret is a literal
    };
    const Hostile cases[] = {
        {"SELECT * FROM t WHERE a = 'unterminated secret1", "secret1"},
        // MySQL has no dollar quotes: there, these are names.
        {"SELECT * FROM t WHERE a = $$never closed secret2", "secret2", {kAny, kPg}},
        {"SELECT * FROM t WHERE a = $q$ secret3 $q", "secret3", {kAny, kPg}},
        {"SELECT * FROM \"unterminated secret4", "secret4"},
        {"SELECT * FROM `unterminated secret5", "secret5"},
        {"SELECT /* /* nested */ still comment secret6 */ 1", "secret6"},
        {"SELECT /* never closed secret7", "secret7"},
        {"SELECT E'\\' secret8 '", "secret8"},
        // PostgreSQL: 'a\' ends the string and secret9 is a name.
        {"SELECT 'a\\'secret9'", "secret9", {kAny, kMy}},
        {"SELECT * FROM t WHERE x IN ('secret10', 'secret11')", "secret1"},
        {"SELECT 9876543210", "9876543210"},
        {"SELECT 1e99999", "99999"},
        {"SELECT x'DEADBEEF'", "DEADBEEF"},
        {"SELECT * FROM t WHERE a = 'sec\0ret'", "sec"},
        {"SELECT U&'secret12'", "secret12"},
        {"SELECT n'secret13'", "secret13"},
        {"SELECT 12345abc", "12345"},
    };
    for (const auto& [sql, secret, dialects] : cases) {
        for (Dialect d : dialects) {
            StatementShape shape = describe_statement(sql, d);
            expect_no_secret(shape, secret, sql);
            expect_bounds(shape);
            for (std::string_view piece : split_statements(sql, d))
                expect_no_secret(describe_statement(piece, d), secret, piece);
        }
    }
}

TEST(SqlStatement, BoundsHoldOnHugeInput) {
    std::string sql = "SELECT ";
    for (int i = 0; i < 20000; ++i)
        sql += "column_" + std::to_string(i) + " , 'lit" + std::to_string(i) + "', ";
    sql += "1 FROM ";
    for (int i = 0; i < 200; ++i)
        sql += (i ? ", table_number_" : "table_number_") + std::to_string(i);
    StatementShape shape = describe_statement(sql);
    EXPECT_EQ(shape.operation, "SELECT");
    EXPECT_LE(shape.normalized.size(), kMaxNormalized);
    EXPECT_GT(shape.normalized.size(), kMaxNormalized - 40);  // cut close to the bound
    EXPECT_EQ(shape.normalized.find("lit"), std::string::npos);
    EXPECT_LE(shape.summary.size(), kMaxSummary);
    EXPECT_EQ(shape.summary.rfind("SELECT table_number_0 table_number_1 ", 0), 0u);
    // Whole names only: the summary never ends in half a name.
    EXPECT_NE(shape.summary.back(), '_');
    std::string last = shape.summary.substr(shape.summary.rfind(' ') + 1);
    EXPECT_EQ(last.rfind("table_number_", 0), 0u) << last;
    EXPECT_TRUE(shape.collection.empty());

    // One huge name: the summary and collection are cut, never over their bounds.
    std::string long_name(100000, 'n');
    shape = describe_statement("SELECT * FROM " + long_name);
    EXPECT_LE(shape.summary.size(), kMaxSummary);
    EXPECT_LE(shape.collection.size(), 128u);
    EXPECT_LE(shape.normalized.size(), kMaxNormalized);
}

TEST(SqlStatement, OutputIsUtf8EvenFromBinaryBytes) {
    std::string sql = "SELECT * FROM t\xff\xfe\xc3 WHERE a = '\xff secret' AND \xe2\x82 = 1";
    StatementShape shape = describe_statement(sql);
    for (const std::string* out : {&shape.summary, &shape.collection, &shape.normalized}) {
        for (unsigned char c : *out)
            EXPECT_LT(c, 0x80) << *out;  // every byte here was invalid UTF-8: all replaced
    }
    EXPECT_EQ(shape.summary, "SELECT t???");
    expect_no_secret(shape, "secret", sql);
    // Valid UTF-8 names pass.
    shape = describe_statement("SELECT * FROM café");
    EXPECT_EQ(shape.collection, "café");
}

TEST(SqlStatement, RandomBytesKeepTheBounds) {
    std::mt19937 rng(23);
    for (int round = 0; round < 2000; ++round) {
        std::string sql(rng() % 3000, '\0');
        for (char& c : sql)
            c = static_cast<char>(rng() % 4 == 0 ? "'\"`$;/*-#\\ ("[rng() % 12] : rng() % 256);
        for (Dialect d : {Dialect::any, Dialect::postgres, Dialect::mysql}) {
            StatementShape shape = describe_statement(sql, d);
            expect_bounds(shape);
            for (std::string_view piece : split_statements(sql, d)) {
                ASSERT_GE(piece.data(), sql.data());
                ASSERT_LE(piece.data() + piece.size(), sql.data() + sql.size());
                ASSERT_FALSE(piece.empty());
            }
        }
    }
}

TEST(SqlStatement, SplitsOnSemicolonsOutsideQuotesAndComments) {
    EXPECT_EQ(split_statements("BEGIN; SELECT 1;COMMIT;"),
              (Statements{"BEGIN", "SELECT 1", "COMMIT"}));
    EXPECT_EQ(split_statements("SELECT ';' ; SELECT \";\" ; SELECT `;`"),
              (Statements{"SELECT ';'", "SELECT \";\"", "SELECT `;`"}));
    EXPECT_EQ(split_statements("SELECT 1 -- ; not here\n; /* ; */ SELECT 2"),
              (Statements{"SELECT 1", "SELECT 2"}));
    EXPECT_EQ(
        split_statements("CREATE FUNCTION f() AS $$ BEGIN; END; $$ LANGUAGE plpgsql; SELECT f()"),
        (Statements{"CREATE FUNCTION f() AS $$ BEGIN; END; $$ LANGUAGE plpgsql", "SELECT f()"}));
    EXPECT_EQ(split_statements(" ; ;; -- nothing\n ; "), Statements{});
    EXPECT_EQ(split_statements(""), Statements{});
    EXPECT_EQ(split_statements("SELECT 'unterminated; SELECT 2"),
              (Statements{"SELECT 'unterminated; SELECT 2"}));
    EXPECT_EQ(split_statements("SELECT 'a\\';' ; SELECT 2", Dialect::mysql),
              (Statements{"SELECT 'a\\';'", "SELECT 2"}));
    EXPECT_EQ(split_statements("SELECT 'a\\' ; SELECT 2", Dialect::postgres),
              (Statements{"SELECT 'a\\'", "SELECT 2"}));
    EXPECT_EQ(split_statements("SELECT 1 # ; \n ; SELECT 2", Dialect::mysql),
              (Statements{"SELECT 1", "SELECT 2"}));
}

TEST(SqlStatement, SummaryIsLowCardinality) {
    // Statements that differ only in their literals share every output but none.
    StatementShape a = describe_statement("SELECT * FROM t WHERE id = 1 AND name = 'a'");
    StatementShape b = describe_statement("SELECT * FROM t WHERE id = 999 AND name = 'zzz'");
    EXPECT_EQ(a.operation, b.operation);
    EXPECT_EQ(a.summary, b.summary);
    EXPECT_EQ(a.collection, b.collection);
    EXPECT_EQ(a.normalized, b.normalized);
    EXPECT_EQ(describe_statement("SELECT * FROM t WHERE id IN (1)").normalized,
              describe_statement("SELECT * FROM t WHERE id IN (1, 2, 3, 4, 5, 6)").normalized);
}

}  // namespace
}  // namespace loupe::sql
