#include "util/suggest.h"

#include <algorithm>
#include <limits>

namespace loupe::util {

std::size_t edit_distance(std::string_view a, std::string_view b) {
    // Optimal string alignment: three rows of the Damerau-Levenshtein table.
    std::vector<std::size_t> before(b.size() + 1), previous(b.size() + 1), current(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j)
        previous[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        current[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t substitution = a[i - 1] == b[j - 1] ? 0 : 1;
            current[j] =
                std::min({previous[j] + 1, current[j - 1] + 1, previous[j - 1] + substitution});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                current[j] = std::min(current[j], before[j - 2] + 1);
        }
        std::swap(before, previous);
        std::swap(previous, current);
    }
    return previous[b.size()];
}

namespace {

std::string_view without_dashes(std::string_view name) {
    while (!name.empty() && name.front() == '-')
        name.remove_prefix(1);
    return name;
}

}  // namespace

std::vector<std::string> near_names(std::string_view word,
                                    const std::vector<std::string>& candidates) {
    // Flags are compared without their dashes: "-listen" is one edit from "--listen", and a
    // short word must not be "near" every short flag.
    const std::string_view core = without_dashes(word);
    // A third of the letters, one at least, but never all of them ("-x" is not near "-h").
    const std::size_t allowed =
        std::min(std::max<std::size_t>(1, core.size() / 3), core.empty() ? 0 : core.size() - 1);
    std::size_t best = std::numeric_limits<std::size_t>::max();
    std::vector<std::string> nearest;
    for (const auto& candidate : candidates) {
        if (candidate == word) continue;
        const std::size_t distance = edit_distance(core, without_dashes(candidate));
        if (distance > allowed || distance > best) continue;
        if (distance < best) nearest.clear();
        best = distance;
        if (std::find(nearest.begin(), nearest.end(), candidate) == nearest.end())
            nearest.push_back(candidate);
    }
    return nearest;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
    const auto nearest = near_names(word, candidates);
    if (nearest.empty()) return "";
    std::string text = " (did you mean ";
    for (std::size_t i = 0; i < nearest.size(); ++i) {
        if (i > 0) text += i + 1 == nearest.size() ? " or " : ", ";
        text += nearest[i];
    }
    return text + "?)";
}

}  // namespace loupe::util
