// "Did you mean ...?" for mistyped flags, settings and names.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace loupe::util {

// Insertions, deletions, substitutions and swaps of two neighbours that turn `a` into `b`.
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidates nearest to `word`, when near enough to be a typo of it (a third of its letters
// at most, dashes aside); none when nothing is.
std::vector<std::string> near_names(std::string_view word,
                                    const std::vector<std::string>& candidates);

// " (did you mean --listen?)", " (did you mean --pid or --port?)", or "" without a near one.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace loupe::util
