#include "cli/top/selection.h"

#include <algorithm>

namespace loupe::top {

int Selection::place(const std::vector<ServiceRow>& rows) {
    if (rows.empty()) {
        index_ = 0;
        return -1;
    }
    const auto it = std::find_if(rows.begin(), rows.end(),
                                 [&](const ServiceRow& r) { return r.name == service_; });
    if (it != rows.end()) {
        index_ = static_cast<int>(it - rows.begin());
    } else {
        index_ = std::clamp(index_, 0, static_cast<int>(rows.size()) - 1);
        service_ = rows[static_cast<std::size_t>(index_)].name;
    }
    return index_;
}

void Selection::move(const std::vector<ServiceRow>& rows, int delta) {
    const int at = place(rows);
    if (at >= 0) select_index(rows, at + delta);
}

void Selection::select_index(const std::vector<ServiceRow>& rows, int index) {
    if (rows.empty()) return;
    index_ = std::clamp(index, 0, static_cast<int>(rows.size()) - 1);
    service_ = rows[static_cast<std::size_t>(index_)].name;
}

}  // namespace loupe::top
