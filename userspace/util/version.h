#pragma once

namespace loupe {
// Set by CMake from project(VERSION).
inline constexpr const char* kVersion = LOUPE_VERSION;
}  // namespace loupe
