/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Protocol classification of a connection from the start of its first message: one small
 * looks_like_<protocol>() per protocol. User space confirms (its parsers resynchronise), so these
 * may be permissive, but they run in the traced process's reads and writes: they must be cheap.
 * They classify by the protocol's framing, never by keywords that may occur in any traffic (a
 * classifier that looked for "GET" anywhere in the data took HTTP bodies and TLS records for
 * Redis commands: beyla#1745). Each answers for the first `len` bytes of a message start (at most
 * CLASSIFY_BYTES, leading CR/LF already skipped): yes, no, or "maybe", when those bytes are a
 * prefix of a start it recognises, as when a slow client writes its request line a few bytes at a
 * time. CLASSIFY_BYTES bytes always suffice for a yes or a no. */
#ifndef LOUPE_BPF_PROTOCOL_CLASSIFY_BPF_H
#define LOUPE_BPF_PROTOCOL_CLASSIFY_BPF_H

#include "vmlinux.h"
#include "loupe_abi.h"

#define CLASSIFY_NO 0
#define CLASSIFY_MAYBE 1
#define CLASSIFY_YES 2

// Bytes of a message start the classifiers are given (the rest of their buffer is zero).
#define CLASSIFY_BYTES 16

// Load-time: the protocols connections are classified as (bit 1 << enum loupe_protocol). A
// connection that is none of them stops costing after a few events.
const volatile __u32 enabled_protocols =
    (1U << LOUPE_PROTOCOL_HTTP1) | (1U << LOUPE_PROTOCOL_REDIS) | (1U << LOUPE_PROTOCOL_POSTGRES) |
    (1U << LOUPE_PROTOCOL_MYSQL);

#define WORD4(a, b, c, d)                                                                          \
    ((__u32)(a) | ((__u32)(b) << 8) | ((__u32)(c) << 16) | ((__u32)(d) << 24))

// Whether the first min(len, 4) bytes of `w` (little-endian) equal those of `token`.
static __always_inline bool word_prefix(__u32 w, __u32 token, __u32 len)
{
    __u32 mask = len >= 4 ? 0xffffffffU : (1U << (8 * len)) - 1;
    return (w & mask) == (token & mask);
}

// HTTP/1.x: a request method or "HTTP" (a status line: a connection picked up mid-stream, or a
// client whose first read is a response), compared as their first four bytes.
static __always_inline int looks_like_http1(const __u8 *p, __u32 len)
{
    __u32 w = WORD4(p[0], p[1], p[2], p[3]);
    bool any = word_prefix(w, WORD4('G', 'E', 'T', ' '), len) ||
               word_prefix(w, WORD4('P', 'O', 'S', 'T'), len) ||
               word_prefix(w, WORD4('P', 'U', 'T', ' '), len) ||
               word_prefix(w, WORD4('H', 'E', 'A', 'D'), len) ||
               word_prefix(w, WORD4('D', 'E', 'L', 'E'), len) ||
               word_prefix(w, WORD4('P', 'A', 'T', 'C'), len) ||
               word_prefix(w, WORD4('O', 'P', 'T', 'I'), len) ||
               word_prefix(w, WORD4('C', 'O', 'N', 'N'), len) ||
               word_prefix(w, WORD4('T', 'R', 'A', 'C'), len) ||
               word_prefix(w, WORD4('H', 'T', 'T', 'P'), len);
    if (!any)
        return CLASSIFY_NO;
    return len >= 4 ? CLASSIFY_YES : CLASSIFY_MAYBE;
}

// Digits of a RESP array's length taken for a command: 9,999,999 arguments is far beyond any
// real command, and bounds the look.
#define RESP_MAX_DIGITS 7

// Redis: a command as clients send it, a RESP array of bulk strings, `*<count>\r\n$`; its replies
// (`+OK`, `:1`...) are not looked at: POP3 and others answer `+OK` too. Inline commands (a line
// of words) are what a telnet user types: any text protocol's line would pass for one, so only
// exact forms a real client sends are taken, here redis-benchmark's PING_INLINE (`PING\r\n`).
static __always_inline int looks_like_redis(const __u8 *p, __u32 len)
{
    if (p[0] == '*') {
        __u32 digits = 0;
#pragma unroll
        for (__u32 i = 1; i < RESP_MAX_DIGITS + 2; i++) {
            if (i >= len)
                return CLASSIFY_MAYBE;
            __u8 c = p[i];
            if (c >= '0' && c <= '9') {
                if (digits == RESP_MAX_DIGITS || (digits == 0 && c == '0'))
                    return CLASSIFY_NO;
                digits++;
                continue;
            }
            if (digits == 0 || c != '\r')
                return CLASSIFY_NO;
            if (i + 1 >= len)
                return CLASSIFY_MAYBE;
            if (p[i + 1] != '\n')
                return CLASSIFY_NO;
            if (i + 2 >= len)
                return CLASSIFY_MAYBE;
            return p[i + 2] == '$' ? CLASSIFY_YES : CLASSIFY_NO;
        }
        return CLASSIFY_NO;
    }
    __u32 w = WORD4(p[0], p[1], p[2], p[3]);
    if (!word_prefix(w, WORD4('P', 'I', 'N', 'G'), len))
        return CLASSIFY_NO;
    if (len < 6)
        return (len < 5 || p[4] == '\r') ? CLASSIFY_MAYBE : CLASSIFY_NO;
    return p[4] == '\r' && p[5] == '\n' ? CLASSIFY_YES : CLASSIFY_NO;
}

// MySQL / MariaDB: packets are framed as a 3-byte little-endian payload length and a sequence id,
// and each of the starts below is written (and read) as one whole packet, so the length must
// match the data exactly: with the fixed bytes that come first, no text protocol (HTTP, RESP, SQL
// in a body or a value: beyla#1745, OBI#1464, beyla#1697) can pass for one. Taken:
// - the server's greeting (the server's first write, the client's first read): sequence id 0,
//   protocol version 10, a version string that starts with a digit;
// - a HandshakeResponse (the client's first write): sequence id 1, CLIENT_PROTOCOL_41 set in its
//   capabilities, the first bytes of its 23-byte zero filler;
// - a connection picked up mid-stream: a COM_QUERY (sequence id 0, command 3) whose text starts
//   with an SQL verb, any case.
#define MYSQL_MIN_GREETING 20
#define MYSQL_CLIENT_PROTOCOL_41 0x200

static __always_inline bool mysql_version_char(__u8 c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '.' || c == '-' || c == '_' || c == '+' || c == '~';
}

// Whether `len` bytes hold exactly one packet of payload length `payload`; "maybe" while they
// are a short prefix of one.
static __always_inline int mysql_whole_packet(__u32 payload, __u32 len)
{
    if (len == payload + 4)
        return CLASSIFY_YES;
    // The copy holds at most LOUPE_DATA_HEAD_MAX bytes: a larger packet fills it.
    if (len >= LOUPE_DATA_HEAD_MAX && payload + 4 > len)
        return CLASSIFY_YES;
    return len < CLASSIFY_BYTES && len < payload + 4 ? CLASSIFY_MAYBE : CLASSIFY_NO;
}

static __always_inline int looks_like_mysql(const __u8 *p, __u32 len)
{
    // A packet header written alone (the greeting's or the HandshakeResponse's: sequence 0 or 1,
    // a payload under 64 KiB) may be MySQL. Shorter writes are not held: MySQL writes a header
    // whole, and holding any 1-3 byte write kept other protocols' garbage from being counted.
    if (len < 4)
        return CLASSIFY_NO;
    if (len == 4)
        return p[3] <= 1 && p[2] == 0 ? CLASSIFY_MAYBE : CLASSIFY_NO;
    __u32 payload = (__u32)p[0] | ((__u32)p[1] << 8) | ((__u32)p[2] << 16);
    if (p[3] == 0 && p[4] == 10) { // greeting
        if (payload < MYSQL_MIN_GREETING || payload > 4096)
            return CLASSIFY_NO;
        if (len > 5 && !(p[5] >= '0' && p[5] <= '9'))
            return CLASSIFY_NO;
        bool ended = false;
#pragma unroll
        for (__u32 i = 6; i < CLASSIFY_BYTES; i++) {
            if (i >= len || ended)
                continue;
            if (p[i] == 0)
                ended = true;
            else if (!mysql_version_char(p[i]))
                return CLASSIFY_NO;
        }
        return mysql_whole_packet(payload, len);
    }
    if (p[3] == 1) { // HandshakeResponse41 (or an SSL request)
        if (payload < 32 || payload > 65536)
            return CLASSIFY_NO;
        if (len > 5 && !(p[5] & (MYSQL_CLIENT_PROTOCOL_41 >> 8)))
            return CLASSIFY_NO;
#pragma unroll
        for (__u32 i = 13; i < CLASSIFY_BYTES; i++)
            if (i < len && p[i] != 0)
                return CLASSIFY_NO;
        return mysql_whole_packet(payload, len);
    }
    if (p[3] == 0 && p[4] == 3) { // COM_QUERY
        if (payload < 5)
            return CLASSIFY_NO;
        if (len < 9)
            return len < payload + 4 ? CLASSIFY_MAYBE : CLASSIFY_NO;
        __u32 w = WORD4(p[5], p[6], p[7], p[8]) | 0x20202020U; // lower case (' ' stays)
        bool verb = w == WORD4('s', 'e', 'l', 'e') || w == WORD4('i', 'n', 's', 'e') ||
                    w == WORD4('u', 'p', 'd', 'a') || w == WORD4('d', 'e', 'l', 'e') ||
                    w == WORD4('r', 'e', 'p', 'l') || w == WORD4('b', 'e', 'g', 'i') ||
                    w == WORD4('c', 'o', 'm', 'm') || w == WORD4('r', 'o', 'l', 'l') ||
                    w == WORD4('s', 't', 'a', 'r') || w == WORD4('s', 'e', 't', ' ') ||
                    w == WORD4('s', 'h', 'o', 'w') || w == WORD4('c', 'a', 'l', 'l') ||
                    w == WORD4('w', 'i', 't', 'h');
        return verb ? mysql_whole_packet(payload, len) : CLASSIFY_NO;
    }
    return CLASSIFY_NO;
}

// A MySQL client's SSL request: the 32-byte prefix of a HandshakeResponse41 (sequence id 1,
// CLIENT_PROTOCOL_41 and CLIENT_SSL set), after which both ends speak TLS. A whole
// HandshakeResponse is longer (it names the user): a 32-byte one is this request. The client writes
// it whole; a server reads it whole (`head` holds the first `len` bytes of a read of `total`, the
// ClientHello after it when the client's next write arrived too), or its 4-byte header alone and
// then its payload (mariadbd: mysql_ssl_request_header, then mysql_ssl_request_payload).
#define MYSQL_CLIENT_SSL 0x800
#define MYSQL_SSL_REQUEST_PAYLOAD 32

static __always_inline bool mysql_ssl_request_header(const __u8 *head, __u32 len)
{
    return len >= 4 && head[0] == MYSQL_SSL_REQUEST_PAYLOAD && head[1] == 0 && head[2] == 0 &&
           head[3] == 1;
}

static __always_inline bool mysql_ssl_request_payload(const __u8 *payload, __u32 len, __u64 total)
{
    return len >= 2 && total >= MYSQL_SSL_REQUEST_PAYLOAD &&
           (payload[1] & (MYSQL_CLIENT_PROTOCOL_41 >> 8)) && (payload[1] & (MYSQL_CLIENT_SSL >> 8));
}

static __always_inline bool mysql_ssl_request(const __u8 *head, __u32 len, __u64 total)
{
    return len >= 8 && total >= MYSQL_SSL_REQUEST_PAYLOAD + 4 && mysql_ssl_request_header(head, len) &&
           mysql_ssl_request_payload(head + 4, len - 4, total - 4);
}

#undef WORD4

#define BE32(p, i)                                                                                 \
    (((__u32)(p)[i] << 24) | ((__u32)(p)[(i) + 1] << 16) | ((__u32)(p)[(i) + 2] << 8) |            \
     (__u32)(p)[(i) + 3])
#define PG_SSL_REQUEST 80877103U
#define PG_GSSENC_REQUEST 80877104U
#define PG_CANCEL_REQUEST 80877102U
// PostgreSQL's own limit on a startup-phase message (MAX_STARTUP_PACKET_LENGTH).
#define PG_MAX_STARTUP_LENGTH 10000U

// PostgreSQL: the first message a client sends, untyped: int32 length, int32 code. SSLRequest and
// GSSENCRequest (length 8) and CancelRequest (length 16) by their fixed codes; a StartupMessage
// by protocol major version 3 (0x0003xxxx), a length PostgreSQL accepts, and its first parameter
// name (`user`, `database`...: [a-z_.0-9] up to its NUL). Every client writes these whole, so 8
// bytes decide. SQL keywords alone never classify (beyla#1745, OBI#1464): a connection picked up
// mid-stream is taken by its messages' framing (looks_like_postgres_midstream).
static __always_inline int looks_like_postgres(const __u8 *p, __u32 len)
{
    if (len < 8)
        return CLASSIFY_NO;
    __u32 length = BE32(p, 0);
    __u32 code = BE32(p, 4);
    if (code == PG_SSL_REQUEST || code == PG_GSSENC_REQUEST)
        return length == 8 ? CLASSIFY_YES : CLASSIFY_NO;
    if (code == PG_CANCEL_REQUEST)
        return length == 16 ? CLASSIFY_YES : CLASSIFY_NO;
    if ((code >> 16) != 3 || length <= 9 || length > PG_MAX_STARTUP_LENGTH || len < 9)
        return CLASSIFY_NO;
    __u8 c = p[8];
    if (!((c >= 'a' && c <= 'z') || c == '_'))
        return CLASSIFY_NO;
    bool ended = false;
#pragma unroll
    for (__u32 i = 9; i < CLASSIFY_BYTES; i++) {
        c = p[i];
        if (i >= len || ended)
            continue;
        if (c == 0)
            ended = true;
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
            return CLASSIFY_NO;
    }
    return CLASSIFY_YES;
}

// A byte of an identifier as drivers name prepared statements and portals ("P0_12", "S_1",
// "_pg3_0", "stmt.7").
static __always_inline bool pg_name_byte(__u8 c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '$' || c == '-';
}

static __always_inline bool pg_text_byte(__u8 c)
{
    return (c >= 0x20 && c < 0x7f) || c == '\t' || c == '\n' || c == '\r';
}

// The first byte of a statement's text: a keyword's letter, `(`, a comment, white space.
static __always_inline bool pg_sql_start(__u8 c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '(' || c == '/' ||
           c == '-' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// PostgreSQL picked up mid-stream (a connection open before loupe started, its prepared
// statements too): a read or write that begins with a client's Query, Parse, or Bind of a named
// statement. Taken only on framing that text or another protocol does not have by chance: the
// type letter, a big-endian length whose high byte is 0, and then
// - Query ('Q'): the length is exactly the read or write (libpq sends each Query by itself), and
//   the rest of the 16 bytes is SQL text (printable, starting like a statement);
// - Parse ('P'): a statement name (identifier bytes, possibly empty) ended by NUL within the 16
//   bytes, then SQL text as above (or a name running past them);
// - Bind ('B'): a portal name (usually empty) and a non-empty statement name, both identifiers
//   ended by NUL within the 16 bytes (or a statement name of 4+ bytes running past them);
// and for Parse and Bind the message fits in the read or write. The parser in user space still
// has to confirm (the messages that follow, and their replies).
static __always_inline int looks_like_postgres_midstream(const __u8 *p, __u32 len, __u64 total)
{
    __u8 type = p[0];
    if (len < CLASSIFY_BYTES || (type != 'Q' && type != 'P' && type != 'B'))
        return CLASSIFY_NO;
    __u32 length = BE32(p, 1);
    if (p[1] != 0 || length < 8 || (__u64)length + 1 > total)
        return CLASSIFY_NO;
    if (type == 'Q' && (__u64)length + 1 != total)
        return CLASSIFY_NO;
    // Q: state 1 from the start (text). P: 0 = in the name, 1 = in the text. B: 0 = portal name,
    // 2 = statement name, 3 = after it.
    __u32 state = type == 'Q' ? 1 : 0;
    bool text_started = false;
    __u32 name_bytes = 0;
    __u32 statement_bytes = 0;
#pragma unroll
    for (__u32 i = 5; i < CLASSIFY_BYTES; i++) {
        __u8 c = p[i];
        if (state == 0) {
            if (c == 0)
                state = type == 'P' ? 1 : 2;
            else if (pg_name_byte(c))
                name_bytes++;
            else
                return CLASSIFY_NO;
        } else if (state == 1) {
            if (!text_started) {
                if (!pg_sql_start(c))
                    return CLASSIFY_NO;
                text_started = true;
            } else if (!pg_text_byte(c)) {
                return CLASSIFY_NO;
            }
        } else if (state == 2) {
            if (c == 0) {
                if (statement_bytes == 0)
                    return CLASSIFY_NO;
                state = 3;
            } else if (pg_name_byte(c)) {
                statement_bytes++;
            } else {
                return CLASSIFY_NO;
            }
        }
    }
    // A name longer than the bytes looked at: taken when long enough to be one (4+ bytes).
    if (type == 'B')
        return state == 3 || (state == 2 && statement_bytes >= 4) ? CLASSIFY_YES : CLASSIFY_NO;
    return text_started || (state == 0 && name_bytes >= 8) ? CLASSIFY_YES : CLASSIFY_NO;
}

#undef BE32

// The protocol of a message start (`p`: CLASSIFY_BYTES bytes, the first `len` valid), among the
// enabled ones: LOUPE_PROTOCOL_UNKNOWN with *maybe set when it may yet become one of them.
// `total`: the bytes of the whole read or write (PostgreSQL's Query must be all of it).
static __always_inline __u8 classify_start(const __u8 *p, __u32 len, __u64 total, bool *maybe)
{
    int http = CLASSIFY_NO;
    int redis = CLASSIFY_NO;
    int postgres = CLASSIFY_NO;
    if (enabled_protocols & (1U << LOUPE_PROTOCOL_HTTP1))
        http = looks_like_http1(p, len);
    if (http == CLASSIFY_YES)
        return LOUPE_PROTOCOL_HTTP1;
    if (enabled_protocols & (1U << LOUPE_PROTOCOL_REDIS))
        redis = looks_like_redis(p, len);
    if (redis == CLASSIFY_YES)
        return LOUPE_PROTOCOL_REDIS;
    if (enabled_protocols & (1U << LOUPE_PROTOCOL_POSTGRES))
        postgres = looks_like_postgres(p, len);
    if (postgres == CLASSIFY_NO && (enabled_protocols & (1U << LOUPE_PROTOCOL_POSTGRES)))
        postgres = looks_like_postgres_midstream(p, len, total);
    if (postgres == CLASSIFY_YES)
        return LOUPE_PROTOCOL_POSTGRES;
    int mysql = CLASSIFY_NO;
    if (enabled_protocols & (1U << LOUPE_PROTOCOL_MYSQL))
        mysql = looks_like_mysql(p, len);
    if (mysql == CLASSIFY_YES)
        return LOUPE_PROTOCOL_MYSQL;
    *maybe = http == CLASSIFY_MAYBE || redis == CLASSIFY_MAYBE || mysql == CLASSIFY_MAYBE;
    return LOUPE_PROTOCOL_UNKNOWN;
}

#endif /* LOUPE_BPF_PROTOCOL_CLASSIFY_BPF_H */
