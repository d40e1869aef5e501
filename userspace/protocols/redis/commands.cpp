#include "protocols/redis/commands.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace loupe::redis {
namespace {

using K = CommandKind;

// COMMAND LIST of redis-server 7.0, plus the hash-field commands of 7.4/8.0.
constexpr CommandInfo kCommands[] = {
    {"ACL", K::kPlain, true},
    {"APPEND"},
    {"ASKING"},
    {"AUTH"},
    {"BGREWRITEAOF"},
    {"BGSAVE"},
    {"BITCOUNT"},
    {"BITFIELD"},
    {"BITFIELD_RO"},
    {"BITOP"},
    {"BITPOS"},
    {"BLMOVE"},
    {"BLMPOP"},
    {"BLPOP"},
    {"BRPOP"},
    {"BRPOPLPUSH"},
    {"BZMPOP"},
    {"BZPOPMAX"},
    {"BZPOPMIN"},
    {"CLIENT", K::kClient, true},
    {"CLUSTER", K::kPlain, true},
    {"COMMAND", K::kPlain, true},
    {"CONFIG", K::kPlain, true},
    {"COPY"},
    {"DBSIZE"},
    {"DEBUG"},
    {"DECR"},
    {"DECRBY"},
    {"DEL"},
    {"DISCARD", K::kDiscard},
    {"DUMP", K::kLookup},
    {"ECHO"},
    {"EVAL"},
    {"EVAL_RO"},
    {"EVALSHA"},
    {"EVALSHA_RO"},
    {"EXEC", K::kExec},
    {"EXISTS", K::kExists},
    {"EXPIRE"},
    {"EXPIREAT"},
    {"EXPIRETIME"},
    {"FAILOVER"},
    {"FCALL"},
    {"FCALL_RO"},
    {"FLUSHALL"},
    {"FLUSHDB"},
    {"FUNCTION", K::kPlain, true},
    {"GEOADD"},
    {"GEODIST"},
    {"GEOHASH"},
    {"GEOPOS"},
    {"GEORADIUS"},
    {"GEORADIUSBYMEMBER"},
    {"GEORADIUSBYMEMBER_RO"},
    {"GEORADIUS_RO"},
    {"GEOSEARCH"},
    {"GEOSEARCHSTORE"},
    {"GET", K::kLookup},
    {"GETBIT"},
    {"GETDEL", K::kLookup},
    {"GETEX", K::kLookup},
    {"GETRANGE"},
    {"GETSET"},
    {"HDEL"},
    {"HELLO", K::kHello},
    {"HEXISTS"},
    {"HEXPIRE"},
    {"HEXPIREAT"},
    {"HEXPIRETIME"},
    {"HGET", K::kLookup},
    {"HGETALL"},
    {"HGETDEL"},
    {"HGETEX"},
    {"HINCRBY"},
    {"HINCRBYFLOAT"},
    {"HKEYS"},
    {"HLEN"},
    {"HMGET", K::kFieldsLookup},
    {"HMSET"},
    {"HPERSIST"},
    {"HPEXPIRE"},
    {"HPEXPIREAT"},
    {"HPEXPIRETIME"},
    {"HPTTL"},
    {"HRANDFIELD", K::kLookup},  // without a count only (see name_command)
    {"HSCAN"},
    {"HSET"},
    {"HSETEX"},
    {"HSETNX"},
    {"HSTRLEN"},
    {"HTTL"},
    {"HVALS"},
    {"INCR"},
    {"INCRBY"},
    {"INCRBYFLOAT"},
    {"INFO"},
    {"KEYS"},
    {"LASTSAVE"},
    {"LATENCY", K::kPlain, true},
    {"LCS"},
    {"LINDEX", K::kLookup},
    {"LINSERT"},
    {"LLEN"},
    {"LMOVE"},
    {"LMPOP"},
    {"LOLWUT"},
    {"LPOP"},
    {"LPOS"},
    {"LPUSH"},
    {"LPUSHX"},
    {"LRANGE"},
    {"LREM"},
    {"LSET"},
    {"LTRIM"},
    {"MEMORY", K::kPlain, true},
    {"MGET", K::kKeysLookup},
    {"MIGRATE"},
    {"MODULE", K::kPlain, true},
    {"MONITOR", K::kMonitor},
    {"MOVE"},
    {"MSET"},
    {"MSETNX"},
    {"MULTI", K::kMulti},
    {"OBJECT", K::kPlain, true},
    {"PERSIST"},
    {"PEXPIRE"},
    {"PEXPIREAT"},
    {"PEXPIRETIME"},
    {"PFADD"},
    {"PFCOUNT"},
    {"PFDEBUG"},
    {"PFMERGE"},
    {"PFSELFTEST"},
    {"PING"},
    {"PSETEX"},
    {"PSUBSCRIBE", K::kPsubscribe},
    {"PSYNC"},
    {"PTTL"},
    {"PUBLISH"},
    {"PUBSUB", K::kPlain, true},
    {"PUNSUBSCRIBE", K::kPunsubscribe},
    {"QUIT"},
    {"RANDOMKEY"},
    {"READONLY"},
    {"READWRITE"},
    {"RENAME"},
    {"RENAMENX"},
    {"REPLCONF"},
    {"REPLICAOF"},
    {"RESET", K::kReset},
    {"RESTORE"},
    {"RESTORE-ASKING"},
    {"ROLE"},
    {"RPOP"},
    {"RPOPLPUSH"},
    {"RPUSH"},
    {"RPUSHX"},
    {"SADD"},
    {"SAVE"},
    {"SCAN"},
    {"SCARD"},
    {"SCRIPT", K::kPlain, true},
    {"SDIFF"},
    {"SDIFFSTORE"},
    {"SELECT", K::kSelect},
    {"SET"},
    {"SETBIT"},
    {"SETEX"},
    {"SETNX"},
    {"SETRANGE"},
    {"SHUTDOWN"},
    {"SINTER"},
    {"SINTERCARD"},
    {"SINTERSTORE"},
    {"SISMEMBER"},
    {"SLAVEOF"},
    {"SLOWLOG", K::kPlain, true},
    {"SMEMBERS"},
    {"SMISMEMBER"},
    {"SMOVE"},
    {"SORT"},
    {"SORT_RO"},
    {"SPOP"},
    {"SPUBLISH"},
    {"SRANDMEMBER", K::kLookup},  // without a count only (see name_command)
    {"SREM"},
    {"SSCAN"},
    {"SSUBSCRIBE", K::kSsubscribe},
    {"STRLEN"},
    {"SUBSCRIBE", K::kSubscribe},
    {"SUBSTR"},
    {"SUNION"},
    {"SUNIONSTORE"},
    {"SUNSUBSCRIBE", K::kSunsubscribe},
    {"SWAPDB"},
    {"SYNC"},
    {"TIME"},
    {"TOUCH"},
    {"TTL"},
    {"TYPE"},
    {"UNLINK"},
    {"UNSUBSCRIBE", K::kUnsubscribe},
    {"UNWATCH"},
    {"WAIT"},
    {"WAITAOF"},
    {"WATCH"},
    {"XACK"},
    {"XADD"},
    {"XAUTOCLAIM"},
    {"XCLAIM"},
    {"XDEL"},
    {"XGROUP", K::kPlain, true},
    {"XINFO", K::kPlain, true},
    {"XLEN"},
    {"XPENDING"},
    {"XRANGE"},
    {"XREAD"},
    {"XREADGROUP"},
    {"XREVRANGE"},
    {"XSETID"},
    {"XTRIM"},
    {"ZADD"},
    {"ZCARD"},
    {"ZCOUNT"},
    {"ZDIFF"},
    {"ZDIFFSTORE"},
    {"ZINCRBY"},
    {"ZINTER"},
    {"ZINTERCARD"},
    {"ZINTERSTORE"},
    {"ZLEXCOUNT"},
    {"ZMPOP"},
    {"ZMSCORE", K::kFieldsLookup},
    {"ZPOPMAX"},
    {"ZPOPMIN"},
    {"ZRANDMEMBER"},
    {"ZRANGE"},
    {"ZRANGEBYLEX"},
    {"ZRANGEBYSCORE"},
    {"ZRANGESTORE"},
    {"ZRANK", K::kLookup},
    {"ZREM"},
    {"ZREMRANGEBYLEX"},
    {"ZREMRANGEBYRANK"},
    {"ZREMRANGEBYSCORE"},
    {"ZREVRANGE"},
    {"ZREVRANGEBYLEX"},
    {"ZREVRANGEBYSCORE"},
    {"ZREVRANK", K::kLookup},
    {"ZSCAN"},
    {"ZSCORE", K::kLookup},
    {"ZUNION"},
    {"ZUNIONSTORE"},
};

constexpr std::array<bool, 256> kTokenChar = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c)
        t[static_cast<std::size_t>(c)] = true;
    for (int c = 'a'; c <= 'z'; ++c)
        t[static_cast<std::size_t>(c)] = t[static_cast<std::size_t>(c - 'a' + 'A')] = true;
    for (const char c : std::string_view("-_.:"))
        t[static_cast<unsigned char>(c)] = true;
    return t;
}();

constexpr char upper(char c) noexcept {
    return c >= 'a' && c <= 'z' ? static_cast<char>(c - ('a' - 'A')) : c;
}

// Open addressing over the upper-cased name; built once, read-only afterwards.
constexpr std::size_t kSlots = 1024;
static_assert(std::size(kCommands) * 2 < kSlots);

constexpr std::uint32_t hash_upper(std::string_view s) noexcept {
    std::uint32_t h = 2166136261u;
    for (const char c : s) {
        h ^= static_cast<unsigned char>(upper(c));
        h *= 16777619u;
    }
    return h;
}

struct Table {
    std::array<std::int16_t, kSlots> slot{};
    Table() {
        slot.fill(-1);
        for (std::size_t i = 0; i < std::size(kCommands); ++i) {
            std::size_t s = hash_upper(kCommands[i].name) & (kSlots - 1);
            while (slot[s] >= 0)
                s = (s + 1) & (kSlots - 1);
            slot[s] = static_cast<std::int16_t>(i);
        }
    }
};

const Table& table() {
    static const Table t;
    return t;
}

bool equals_upper(std::string_view upper_name, std::string_view s) noexcept {
    if (upper_name.size() != s.size()) return false;
    for (std::size_t i = 0; i < s.size(); ++i)
        if (upper_name[i] != upper(s[i])) return false;
    return true;
}

void append_upper(OpName& out, std::string_view s) noexcept {
    const std::size_t n = std::min(s.size(), OpName::kCapacity - out.size);
    for (std::size_t i = 0; i < n; ++i)
        out.bytes[out.size + i] = upper(s[i]);
    out.size = static_cast<std::uint8_t>(out.size + n);
}

}  // namespace

bool Text::equals_upper(std::string_view upper_text) const noexcept {
    return !partial && redis::equals_upper(upper_text, view());
}

void OpName::assign(std::string_view s) noexcept {
    size = 0;
    append(s);
}

void OpName::append(std::string_view s) noexcept {
    const std::size_t n = std::min(s.size(), kCapacity - size);
    std::memcpy(bytes.data() + size, s.data(), n);
    size = static_cast<std::uint8_t>(size + n);
}

const CommandInfo* find_command(std::string_view name) noexcept {
    if (name.empty() || name.size() > Text::kCapacity) return nullptr;
    const Table& t = table();
    std::size_t s = hash_upper(name) & (kSlots - 1);
    while (t.slot[s] >= 0) {
        const CommandInfo& info = kCommands[static_cast<std::size_t>(t.slot[s])];
        if (equals_upper(info.name, name)) return &info;
        s = (s + 1) & (kSlots - 1);
    }
    return nullptr;
}

bool is_command_token(std::string_view word) noexcept {
    if (word.empty() || word.size() > Text::kCapacity) return false;
    for (const char c : word)
        if (!kTokenChar[static_cast<unsigned char>(c)]) return false;
    return true;
}

NamedCommand name_command(const Text& name, const Text* subcommand, std::int64_t argc,
                          OpName& out) noexcept {
    NamedCommand result;
    out.size = 0;
    if (name.partial || !is_command_token(name.view())) {
        out.assign("_OTHER");
        return result;
    }
    result.info = find_command(name.view());
    if (result.info == nullptr) {
        append_upper(out, name.view());
        return result;
    }
    out.assign(result.info->name);
    result.kind = result.info->kind;
    // SRANDMEMBER key count / HRANDFIELD key count return arrays: not a single lookup.
    if ((result.info->name == "SRANDMEMBER" || result.info->name == "HRANDFIELD") && argc != 2)
        result.kind = CommandKind::kPlain;
    if (result.info->container && subcommand != nullptr && argc >= 2) {
        out.append(" ");
        if (!subcommand->partial && is_command_token(subcommand->view()))
            append_upper(out, subcommand->view());
        else
            out.append("_OTHER");
    }
    return result;
}

std::size_t error_prefix(const Text& text, char (&out)[kMaxErrorBytes]) noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < text.size && n < kMaxErrorBytes; ++i) {
        const char c = text.bytes[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') break;
        const char u = upper(c);
        const bool ok = (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '_';
        out[n++] = ok ? u : '_';
    }
    if (n == 0) {
        std::memcpy(out, "ERR", 3);
        n = 3;
    }
    return n;
}

PushKind push_kind(const Text& first) noexcept {
    if (first.partial) return PushKind::kOther;
    const std::string_view k = first.view();
    // Redis sends these in lower case; compare case-insensitively all the same.
    struct Entry {
        std::string_view name;
        PushKind kind;
    };
    static constexpr Entry kKinds[] = {
        {"MESSAGE", PushKind::kMessage},           {"PMESSAGE", PushKind::kMessage},
        {"SMESSAGE", PushKind::kMessage},          {"SUBSCRIBE", PushKind::kSubscribe},
        {"PSUBSCRIBE", PushKind::kPsubscribe},     {"SSUBSCRIBE", PushKind::kSsubscribe},
        {"UNSUBSCRIBE", PushKind::kUnsubscribe},   {"PUNSUBSCRIBE", PushKind::kPunsubscribe},
        {"SUNSUBSCRIBE", PushKind::kSunsubscribe},
    };
    for (const Entry& e : kKinds)
        if (equals_upper(e.name, k)) return e.kind;
    return PushKind::kOther;
}

CommandKind confirmed_command(PushKind kind) noexcept {
    switch (kind) {
        case PushKind::kSubscribe:
            return CommandKind::kSubscribe;
        case PushKind::kPsubscribe:
            return CommandKind::kPsubscribe;
        case PushKind::kSsubscribe:
            return CommandKind::kSsubscribe;
        case PushKind::kUnsubscribe:
            return CommandKind::kUnsubscribe;
        case PushKind::kPunsubscribe:
            return CommandKind::kPunsubscribe;
        case PushKind::kSunsubscribe:
            return CommandKind::kSunsubscribe;
        default:
            return CommandKind::kPlain;
    }
}

}  // namespace loupe::redis
