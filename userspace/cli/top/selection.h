// The cursor of `loupe top`'s services table. It follows a service, not a row number: rows
// re-sort at every refresh, and Enter must open the service that was highlighted.
#pragma once

#include <string>
#include <vector>

#include "cli/top/snapshot.h"

namespace loupe::top {

class Selection {
  public:
    // Finds the selected service in `rows` (as displayed) and returns its index. When it is gone
    // (exited, filtered out), the row now at its last position (or the last row) is selected
    // instead. -1 when `rows` is empty.
    int place(const std::vector<ServiceRow>& rows);

    // Moves `delta` rows from the selected service (clamped to the table).
    void move(const std::vector<ServiceRow>& rows, int delta);
    // Selects the row at `index` (clamped).
    void select_index(const std::vector<ServiceRow>& rows, int index);

    // The selected service ("" before any row was seen).
    const std::string& service() const { return service_; }

  private:
    std::string service_;
    int index_ = 0;
};

}  // namespace loupe::top
