// Constants of the MySQL client/server protocol and the parser's own counters.
#pragma once

#include <cstdint>
#include <iterator>

#include "protocols/protocol.h"

namespace loupe::mysql {

// Command bytes (the first payload byte of a client packet with sequence id 0).
enum Command : std::uint8_t {
    kComSleep = 0x00,
    kComQuit = 0x01,
    kComInitDb = 0x02,
    kComQuery = 0x03,
    kComFieldList = 0x04,
    kComStatistics = 0x09,
    kComProcessInfo = 0x0a,
    kComProcessKill = 0x0c,
    kComDebug = 0x0d,
    kComPing = 0x0e,
    kComChangeUser = 0x11,
    kComBinlogDump = 0x12,
    kComStmtPrepare = 0x16,
    kComStmtExecute = 0x17,
    kComStmtSendLongData = 0x18,
    kComStmtClose = 0x19,
    kComStmtReset = 0x1a,
    kComSetOption = 0x1b,
    kComStmtFetch = 0x1c,
    kComBinlogDumpGtid = 0x1e,
    kComResetConnection = 0x1f,
    kComStmtBulkExecute = 0xfa,  // MariaDB: one statement, many parameter rows
};

// Capability flags (HandshakeV10 and HandshakeResponse41).
inline constexpr std::uint32_t kClientConnectWithDb = 0x00000008;
inline constexpr std::uint32_t kClientCompress = 0x00000020;
inline constexpr std::uint32_t kClientProtocol41 = 0x00000200;
inline constexpr std::uint32_t kClientSsl = 0x00000800;
inline constexpr std::uint32_t kClientSecureConnection = 0x00008000;
inline constexpr std::uint32_t kClientPluginAuth = 0x00080000;
inline constexpr std::uint32_t kClientPluginAuthLenencData = 0x00200000;
inline constexpr std::uint32_t kClientDeprecateEof = 0x01000000;
inline constexpr std::uint32_t kClientQueryAttributes = 0x08000000;  // MySQL 8 only

// Server status flags (OK and EOF packets).
inline constexpr std::uint16_t kServerStatusCursorExists = 0x0040;
inline constexpr std::uint16_t kServerMoreResultsExist = 0x0008;

// A packet's payload length field at its maximum: the payload continues in the next packet.
inline constexpr std::uint32_t kMaxPacketPayload = 0xFFFFFF;

// MariaDB: COM_STMT_EXECUTE/CLOSE/RESET of statement id 0xFFFFFFFF mean the last one prepared on
// the connection (sent pipelined after its COM_STMT_PREPARE, before the id is known).
inline constexpr std::uint32_t kLastPreparedId = 0xFFFFFFFF;

// Counters beyond the pipeline-wide ParserStats; all monotonic.
struct MysqlStats {
    std::uint64_t tls_connections = 0;          // SSL requests: the rest of the connection is TLS
    std::uint64_t replication_connections = 0;  // COM_BINLOG_DUMP: a stream, not followed
    std::uint64_t compressed_connections = 0;   // CLIENT_COMPRESS negotiated: not parsed further
    std::uint64_t auth_failures = 0;            // ERR during the handshake
    std::uint64_t skipped_segments = 0;         // ignored while out of step or given up
    // Commands whose reply lost its boundaries in bytes never captured: reported with the end
    // of the last reply bytes read or written before the next command.
    std::uint64_t unseen_replies = 0;
    std::uint64_t statements_evicted = 0;  // prepared statements dropped from a full table
    std::uint64_t unknown_statements = 0;  // executes of ids never seen prepared
    std::uint64_t sequence_errors = 0;     // reply packets out of sequence
    bool not_mysql = false;                // gave up: the connection does not speak the protocol
};

// MysqlStats as exported, loupe_mysql_<name>_total: kCounterSpecs[i] is the field
// kCounterFields[i] (one order for MetricSpec::parser_counters and protocol_counters()).
inline constexpr protocols::ParserCounterSpec kCounterSpecs[] = {
    {"tls_connections",
     "MySQL/MariaDB connections whose client sent an SSL request: TLS from then on, no longer "
     "copied nor parsed."},
    {"replication_connections",
     "MySQL/MariaDB connections that asked for a binlog stream (COM_BINLOG_DUMP): not followed."},
    {"compressed_connections",
     "MySQL/MariaDB connections that negotiated compression: not parsed further."},
    {"auth_failures", "MySQL/MariaDB ERR packets during the handshake."},
    {"skipped_segments",
     "Reads/writes on MySQL/MariaDB connections ignored while out of step or after giving up."},
    {"unseen_replies",
     "MySQL/MariaDB commands whose reply lost its boundaries in bytes never copied (reported with "
     "the end of the last reply bytes seen)."},
    {"prepared_statements_evicted",
     "MySQL/MariaDB prepared statements forgotten because a connection's statement table was "
     "full."},
    {"unknown_statements", "MySQL/MariaDB executes of statement ids never seen prepared."},
    {"sequence_errors", "MySQL/MariaDB reply packets out of sequence."},
};
inline constexpr std::uint64_t MysqlStats::*kCounterFields[] = {
    &MysqlStats::tls_connections,        &MysqlStats::replication_connections,
    &MysqlStats::compressed_connections, &MysqlStats::auth_failures,
    &MysqlStats::skipped_segments,       &MysqlStats::unseen_replies,
    &MysqlStats::statements_evicted,     &MysqlStats::unknown_statements,
    &MysqlStats::sequence_errors,
};
static_assert(std::size(kCounterSpecs) == std::size(kCounterFields));
static_assert(std::size(kCounterFields) <= protocols::kMaxParserCounters);

}  // namespace loupe::mysql
