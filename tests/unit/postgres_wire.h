// Builders of PostgreSQL protocol 3.0 messages for the parser's tests, fuzzer and benchmark.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace loupe::postgres::wire {

inline std::string be32(std::uint32_t v) {
    std::string out(4, '\0');
    out[0] = static_cast<char>(v >> 24);
    out[1] = static_cast<char>(v >> 16);
    out[2] = static_cast<char>(v >> 8);
    out[3] = static_cast<char>(v);
    return out;
}

inline std::string cstr(std::string_view s) {
    return std::string(s) + '\0';
}

inline std::string msg(char type, std::string_view body) {
    return std::string(1, type) + be32(static_cast<std::uint32_t>(body.size() + 4)) +
           std::string(body);
}

inline std::string startup(
    std::initializer_list<std::pair<std::string_view, std::string_view>> params) {
    std::string body;
    for (const auto& [k, v] : params)
        body += cstr(k) + cstr(v);
    body += '\0';
    return be32(static_cast<std::uint32_t>(body.size() + 8)) + be32(196608) + body;
}

inline std::string ssl_request() {
    return be32(8) + be32(80877103);
}
inline std::string cancel_request() {
    return be32(16) + be32(80877102) + be32(1234) + be32(5678);
}

inline std::string query(std::string_view sql) {
    return msg('Q', cstr(sql));
}
inline std::string parse(std::string_view name, std::string_view sql) {
    return msg('P', cstr(name) + cstr(sql) + std::string(2, '\0'));
}
inline std::string bind(std::string_view portal, std::string_view statement) {
    // no parameter formats, one text parameter "1", no result formats
    return msg('B', cstr(portal) + cstr(statement) + std::string(2, '\0') + std::string("\0\1", 2) +
                        be32(1) + "1" + std::string(2, '\0'));
}
inline std::string describe(char what, std::string_view name) {
    return msg('D', std::string(1, what) + cstr(name));
}
inline std::string execute(std::string_view portal) {
    return msg('E', cstr(portal) + be32(0));
}
inline std::string close_statement(std::string_view name) {
    return msg('C', "S" + cstr(name));
}
inline std::string sync() {
    return msg('S', "");
}

// Backend messages.
inline std::string auth_ok() {
    return msg('R', be32(0));
}
inline std::string parameter_status(std::string_view k, std::string_view v) {
    return msg('S', cstr(k) + cstr(v));
}
inline std::string ready(char status = 'I') {
    return msg('Z', std::string(1, status));
}
inline std::string row_description() {
    return msg('T', std::string("\0\1", 2) + cstr("x") + be32(0) + std::string(2, '\0') + be32(23) +
                        std::string("\0\4", 2) + be32(0xffffffff) + std::string(2, '\0'));
}
inline std::string data_row(std::string_view value) {
    return msg('D', std::string("\0\1", 2) + be32(static_cast<std::uint32_t>(value.size())) +
                        std::string(value));
}
inline std::string complete(std::string_view tag) {
    return msg('C', cstr(tag));
}
inline std::string error(std::string_view sqlstate) {
    return msg('E', "S" + cstr("ERROR") + "V" + cstr("ERROR") + "C" + cstr(sqlstate) + "M" +
                        cstr("it failed") + '\0');
}
inline std::string notice() {
    return msg('N', "S" + cstr("NOTICE") + "C" + cstr("00000") + "M" + cstr("note") + '\0');
}
inline std::string parse_complete() {
    return msg('1', "");
}
inline std::string bind_complete() {
    return msg('2', "");
}
inline std::string close_complete() {
    return msg('3', "");
}
inline std::string no_data() {
    return msg('n', "");
}

// The server's answer to a StartupMessage with trust authentication.
inline std::string startup_reply() {
    return auth_ok() + parameter_status("server_version", "15") + msg('K', be32(1) + be32(2)) +
           ready();
}

}  // namespace loupe::postgres::wire
