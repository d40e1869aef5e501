// Result<T>: a value or the reason there is none, for recoverable errors (in the style of C++23's
// std::expected<T, std::string>, which this compiler's C++20 mode lacks). Fatal start-up errors
// are exceptions instead.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace loupe {

// Why an operation gave no value: a sentence for a log line or an API answer.
struct Error {
    std::string message;
};

template <typename T>
class [[nodiscard]] Result {
  public:
    Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
    Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}

    bool has_value() const { return state_.index() == 0; }
    explicit operator bool() const { return has_value(); }

    T& value() & { return std::get<0>(state_); }
    const T& value() const& { return std::get<0>(state_); }
    T&& value() && { return std::get<0>(std::move(state_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    // Only when !has_value().
    const std::string& error() const { return std::get<1>(state_).message; }

  private:
    std::variant<T, Error> state_;
};

}  // namespace loupe
