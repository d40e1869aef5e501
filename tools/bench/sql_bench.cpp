// The SQL summariser (protocols/sql/statement.h) on statements as ORMs and benchmarks send them:
// items are statements described (operation, summary, collection, normalised text). The SQL
// parsers call it once per Parse / COM_STMT_PREPARE / simple-query statement, so it bounds their
// throughput on simple queries (docs/BENCHMARKS.md: >= 1 M operations/s per core overall).
// Run: build/tools/bench/loupe_benchmarks --benchmark_filter=Sql
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

#include "protocols/sql/statement.h"

namespace {

const std::vector<std::string>& statements() {
    static const std::vector<std::string> kStatements = {
        // pgbench's TPC-B-like transaction, -M simple (literals inline)
        "BEGIN;",
        "UPDATE pgbench_accounts SET abalance = abalance + -4231 WHERE aid = 81327;",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 81327;",
        "UPDATE pgbench_tellers SET tbalance = tbalance + -4231 WHERE tid = 7;",
        "UPDATE pgbench_branches SET bbalance = bbalance + -4231 WHERE bid = 1;",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 81327, -4231, "
        "CURRENT_TIMESTAMP);",
        "END;",
        // sysbench oltp_read_write
        "SELECT c FROM sbtest1 WHERE id=5012",
        "SELECT c FROM sbtest1 WHERE id BETWEEN 4901 AND 5000 ORDER BY c",
        "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 4901 AND 5000 ORDER BY c",
        "UPDATE sbtest1 SET k=k+1 WHERE id=5012",
        "DELETE FROM sbtest1 WHERE id=5012",
        "INSERT INTO sbtest1 (id, k, c, pad) VALUES (5012, 4993, "
        "'83868641912-28773972837-60736120486-75162659906-27563526494-20381887404-41576422241-"
        "93426793964-56405065102-33518432330', '67847967377-48000963322-62604785301-91415491898-"
        "96926520291')",
        // an ORM (Django) with quoted names and placeholders
        "SELECT \"auth_user\".\"id\", \"auth_user\".\"password\", \"auth_user\".\"last_login\", "
        "\"auth_user\".\"is_superuser\", \"auth_user\".\"username\" FROM \"auth_user\" INNER JOIN "
        "\"auth_user_groups\" ON (\"auth_user\".\"id\" = \"auth_user_groups\".\"user_id\") WHERE "
        "\"auth_user_groups\".\"group_id\" IN ($1, $2, $3) ORDER BY \"auth_user\".\"id\" LIMIT 21",
    };
    return kStatements;
}

void BM_SqlDescribeStatement(benchmark::State& state) {
    const auto& all = statements();
    std::size_t i = 0;
    std::size_t bytes = 0;
    for (auto _ : state) {
        const std::string& sql = all[i];
        loupe::sql::StatementShape shape = loupe::sql::describe_statement(sql);
        benchmark::DoNotOptimize(shape);
        bytes += sql.size();
        i = i + 1 == all.size() ? 0 : i + 1;
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_SqlDescribeStatement);

void BM_SqlSplitStatements(benchmark::State& state) {
    std::string batch;
    for (const std::string& s : statements())
        batch += s + (s.back() == ';' ? " " : "; ");
    for (auto _ : state) {
        auto pieces = loupe::sql::split_statements(batch);
        benchmark::DoNotOptimize(pieces);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * statements().size()));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * batch.size()));
}
BENCHMARK(BM_SqlSplitStatements);

}  // namespace
