#include "profile/profile.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_set>

#include <fmt/format.h>

namespace loupe::profile {

std::uint32_t Profile::intern(const Frame& frame) {
    const std::string key = frame.module + '\n' + frame.function + (frame.kernel ? "\nk" : "");
    auto [it, fresh] = frame_ids_.try_emplace(key, static_cast<std::uint32_t>(frames_.size()));
    if (fresh) frames_.push_back(frame);
    return it->second;
}

void Profile::add(const std::vector<Frame>& root_first, std::uint64_t count) {
    std::vector<std::uint32_t> ids;
    ids.reserve(root_first.size());
    for (const Frame& f : root_first)
        ids.push_back(intern(f));
    stacks_[ids] += count;
    total_ += count;
}

bool Profile::add_bounded(const std::vector<Frame>& root_first, std::uint64_t count,
                          std::size_t max_stacks) {
    if (stacks_.size() >= max_stacks) {
        std::vector<std::uint32_t> ids;
        ids.reserve(root_first.size());
        for (const Frame& f : root_first) {
            auto it = frame_ids_.find(f.module + '\n' + f.function + (f.kernel ? "\nk" : ""));
            if (it == frame_ids_.end()) return false;  // a new frame: a new stack
            ids.push_back(it->second);
        }
        auto known = stacks_.find(ids);
        if (known == stacks_.end()) return false;
        known->second += count;
        total_ += count;
        return true;
    }
    add(root_first, count);
    return true;
}

void Profile::merge(const Profile& other) {
    std::vector<Frame> frames;
    for (const auto& [stack, count] : other.stacks()) {
        frames.clear();
        for (std::uint32_t id : stack)
            frames.push_back(other.frames()[id]);
        add(frames, count);
    }
}

void write_folded(const Profile& profile, std::ostream& out) {
    for (const auto& [stack, count] : profile.stacks()) {
        bool first = true;
        for (std::uint32_t id : stack) {
            const Frame& f = profile.frames()[id];
            if (!first) out << ';';
            first = false;
            std::string name = f.function;
            std::replace(name.begin(), name.end(), ';', ':');  // ';' separates frames
            out << name << (f.kernel ? "_[k]" : "");
        }
        out << ' ' << count << '\n';
    }
}

// ---- pprof (profile.proto), encoded by hand: a handful of fields ----
namespace {

void put_varint(std::string& out, std::uint64_t v) {
    while (v >= 0x80) {
        out += static_cast<char>((v & 0x7f) | 0x80);
        v >>= 7;
    }
    out += static_cast<char>(v);
}
void put_key(std::string& out, int field, int wire_type) {
    put_varint(out, static_cast<std::uint64_t>(field << 3 | wire_type));
}
void put_uint(std::string& out, int field, std::uint64_t v) {
    put_key(out, field, 0);
    put_varint(out, v);
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
    put_key(out, field, 2);
    put_varint(out, bytes.size());
    out += bytes;
}
void put_packed(std::string& out, int field, const std::vector<std::uint64_t>& values) {
    std::string packed;
    for (std::uint64_t v : values)
        put_varint(packed, v);
    put_bytes(out, field, packed);
}

class StringTable {
  public:
    StringTable() { index(""); }  // string_table[0] must be ""
    std::uint64_t index(const std::string& s) {
        auto [it, fresh] = ids_.try_emplace(s, strings_.size());
        if (fresh) strings_.push_back(s);
        return it->second;
    }
    const std::vector<std::string>& strings() const { return strings_; }

  private:
    std::unordered_map<std::string, std::uint64_t> ids_;
    std::vector<std::string> strings_;
};

std::string value_type(StringTable& strings, const std::string& type, const std::string& unit) {
    std::string msg;
    put_uint(msg, 1, strings.index(type));
    put_uint(msg, 2, strings.index(unit));
    return msg;
}

}  // namespace

std::string encode_pprof(const Profile& profile) {
    StringTable strings;
    std::string out;
    const std::uint64_t period_ns = 1'000'000'000ULL / std::max(1u, profile.frequency_hz);
    put_bytes(out, 1, value_type(strings, "samples", "count"));
    put_bytes(out, 1, value_type(strings, "cpu", "nanoseconds"));
    for (const auto& [stack, count] : profile.stacks()) {
        std::string sample;
        std::vector<std::uint64_t> locations(stack.rbegin(), stack.rend());  // leaf first
        for (auto& id : locations)
            id += 1;  // ids start at 1
        put_packed(sample, 1, locations);
        put_packed(sample, 2, {count, count * period_ns});
        put_bytes(out, 2, sample);
    }
    // One location and one function per distinct frame.
    for (std::size_t i = 0; i < profile.frames().size(); ++i) {
        std::string line;
        put_uint(line, 1, i + 1);
        std::string location;
        put_uint(location, 1, i + 1);
        put_bytes(location, 4, line);
        put_bytes(out, 4, location);
    }
    for (std::size_t i = 0; i < profile.frames().size(); ++i) {
        const Frame& f = profile.frames()[i];
        const std::string name = f.kernel ? f.function + " [k]" : f.function;
        std::string function;
        put_uint(function, 1, i + 1);
        put_uint(function, 2, strings.index(name));
        put_uint(function, 3, strings.index(name));
        put_uint(function, 4, strings.index(f.module));
        put_bytes(out, 5, function);
    }
    const std::uint64_t time_field = strings.index("cpu");  // before the table is written
    const std::uint64_t unit_field = strings.index("nanoseconds");
    for (const std::string& s : strings.strings())
        put_bytes(out, 6, s);
    put_uint(out, 9, profile.start_unix_ns);
    put_uint(out, 10, profile.duration_ns);
    std::string period_type;
    put_uint(period_type, 1, time_field);
    put_uint(period_type, 2, unit_field);
    put_bytes(out, 11, period_type);
    put_uint(out, 12, period_ns);
    return out;
}

std::string pprof_gzipped(const Profile& profile) {
    const std::string encoded = encode_pprof(profile);
    z_stream stream{};
    // windowBits 15 + 16: a gzip header and trailer, as pprof files have.
    if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return {};
    std::string out(deflateBound(&stream, static_cast<uLong>(encoded.size())), '\0');
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(encoded.data()));
    stream.avail_in = static_cast<uInt>(encoded.size());
    stream.next_out = reinterpret_cast<Bytef*>(out.data());
    stream.avail_out = static_cast<uInt>(out.size());
    const int result = deflate(&stream, Z_FINISH);
    out.resize(stream.total_out);
    deflateEnd(&stream);
    return result == Z_STREAM_END ? out : std::string();
}

std::string write_pprof(const Profile& profile, const std::string& path) {
    const std::string encoded = encode_pprof(profile);
    gzFile file = gzopen(path.c_str(), "wb");
    if (!file) return "cannot create " + path;
    const int written = gzwrite(file, encoded.data(), static_cast<unsigned>(encoded.size()));
    const int closed = gzclose(file);
    if (written != static_cast<int>(encoded.size()) || closed != Z_OK)
        return "cannot write " + path;
    return {};
}

// ---- top functions ----
std::vector<FunctionShare> top_functions(const Profile& profile, std::size_t limit) {
    std::unordered_map<std::uint32_t, FunctionShare> shares;
    for (const auto& [stack, count] : profile.stacks()) {
        if (stack.empty()) continue;
        std::unordered_set<std::uint32_t> seen;  // recursion counts once toward total
        for (std::uint32_t id : stack)
            if (seen.insert(id).second) shares[id].total += count;
        shares[stack.back()].self += count;
    }
    std::vector<FunctionShare> out;
    for (auto& [id, share] : shares) {
        const Frame& f = profile.frames()[id];
        share.function = f.kernel ? f.function + " [k]" : f.function;
        share.module = f.module;
        out.push_back(std::move(share));
    }
    std::sort(out.begin(), out.end(), [](const FunctionShare& a, const FunctionShare& b) {
        if (a.self != b.self) return a.self > b.self;
        if (a.total != b.total) return a.total > b.total;
        return a.function < b.function;
    });
    if (out.size() > limit) out.resize(limit);
    return out;
}

void write_top(const Profile& profile, std::size_t limit, std::ostream& out) {
    const double total = static_cast<double>(std::max<std::uint64_t>(1, profile.total_samples()));
    out << fmt::format("{} samples at {} Hz over {:.1f} s\n", profile.total_samples(),
                       profile.frequency_hz, static_cast<double>(profile.duration_ns) / 1e9);
    out << fmt::format("{:>7} {:>7}  {}\n", "SELF%", "TOTAL%", "FUNCTION (MODULE)");
    for (const FunctionShare& s : top_functions(profile, limit))
        out << fmt::format("{:>6.2f}% {:>6.2f}%  {} ({})\n",
                           100.0 * static_cast<double>(s.self) / total,
                           100.0 * static_cast<double>(s.total) / total, s.function, s.module);
}

// ---- SVG flame graph ----
namespace {

std::string xml_escape(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            default:
                // XML 1.0 forbids most control characters.
                if (static_cast<unsigned char>(c) < 0x20 && c != '\t')
                    out += '?';
                else
                    out += c;
        }
    }
    return out;
}

struct FlameNode {
    std::uint32_t frame = 0;
    std::uint64_t total = 0;
    std::map<std::uint32_t, FlameNode> children;
};

std::string frame_color(const Frame& f) {
    std::uint32_t h = 2166136261u;
    for (char c : f.function)
        h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
    const unsigned v = h % 55;
    if (f.kernel) return fmt::format("rgb({},{},{})", 200 + v % 50, 120 + v, 40);  // orange
    if (!f.known) return fmt::format("rgb({},{},{})", 160 + v, 160 + v, 160 + v);  // grey
    return fmt::format("rgb({},{},{})", 205 + v % 50, 60 + v * 2, 40 + v / 2);     // warm
}

constexpr double kWidth = 1200, kFrameHeight = 16, kPad = 10, kTop = 40;

void draw(const Profile& profile, const FlameNode& node, double x, int depth, int max_depth,
          double per_sample, double total, std::ostream& out) {
    const double w = static_cast<double>(node.total) * per_sample;
    const double y = kTop + (max_depth - depth) * kFrameHeight;
    const Frame& f = profile.frames()[node.frame];
    const std::string name = xml_escape(f.function + (f.kernel ? " [k]" : ""));
    out << fmt::format(
        "<g class=\"f\" data-x=\"{:.3f}\" data-w=\"{:.3f}\" data-d=\"{}\"><title>{} ({}) {} "
        "samples, {:.2f}%</title><rect x=\"{:.2f}\" y=\"{:.1f}\" width=\"{:.2f}\" "
        "height=\"{}\" fill=\"{}\" rx=\"2\"/><text x=\"{:.2f}\" y=\"{:.1f}\"></text>"
        "<desc>{}</desc></g>\n",
        x, w, depth, name, xml_escape(f.module), node.total,
        100.0 * static_cast<double>(node.total) / total, x, y, std::max(0.0, w - 0.5),
        kFrameHeight - 1, frame_color(f), x + 3, y + kFrameHeight - 4, name);
    double child_x = x;
    for (const auto& [id, child] : node.children) {
        draw(profile, child, child_x, depth + 1, max_depth, per_sample, total, out);
        child_x += static_cast<double>(child.total) * per_sample;
    }
}

int depth_of(const FlameNode& node) {
    int deepest = 0;
    for (const auto& [id, child] : node.children)
        deepest = std::max(deepest, 1 + depth_of(child));
    return deepest;
}

constexpr const char* kFlameScript = R"JS(
var frames = Array.prototype.slice.call(document.querySelectorAll("g.f"));
var W = 1200 - 20, PAD = 10, zoomed = null;
function label(g, x, w) {
  var r = g.querySelector("rect"), t = g.querySelector("text");
  var name = g.querySelector("desc").textContent;
  r.setAttribute("x", PAD + x); r.setAttribute("width", Math.max(0, w - 0.5));
  t.setAttribute("x", PAD + x + 3);
  var fit = Math.floor((w - 6) / 7);
  t.textContent = fit < 3 ? "" : (name.length <= fit ? name : name.substring(0, fit - 2) + "..");
}
function layout() {
  var x0 = 0, w0 = W, d0 = 0;
  if (zoomed) { x0 = +zoomed.dataset.x - PAD; w0 = +zoomed.dataset.w; d0 = +zoomed.dataset.d; }
  var scale = W / w0;
  frames.forEach(function (g) {
    var x = +g.dataset.x - PAD, w = +g.dataset.w, d = +g.dataset.d;
    var inside = x >= x0 - 1e-6 && x + w <= x0 + w0 + 1e-6;
    var below = d < d0 && x <= x0 + 1e-6 && x + w >= x0 + w0 - 1e-6;
    if (below) { g.style.display = ""; g.style.opacity = "0.6"; label(g, 0, W); }
    else if (inside && d >= d0) { g.style.display = ""; g.style.opacity = ""; label(g, (x - x0) * scale, w * scale); }
    else g.style.display = "none";
  });
  document.getElementById("reset").style.display = zoomed ? "" : "none";
}
frames.forEach(function (g) { g.addEventListener("click", function () { zoomed = g; layout(); }); });
document.getElementById("reset").addEventListener("click", function () { zoomed = null; layout(); });
document.getElementById("search").addEventListener("click", function () {
  var term = prompt("Search (regular expression)", "");
  var matched = document.getElementById("matched");
  if (term === null) return;
  var re; try { re = new RegExp(term); } catch (e) { matched.textContent = "bad expression"; return; }
  var hits = [];
  frames.forEach(function (g) {
    var r = g.querySelector("rect");
    if (!r.dataset.fill) r.dataset.fill = r.getAttribute("fill");
    var hit = term !== "" && re.test(g.querySelector("desc").textContent);
    r.setAttribute("fill", hit ? "rgb(230,0,230)" : r.dataset.fill);
    if (hit) hits.push([+g.dataset.x, +g.dataset.w]);
  });
  // Matched share: the union of matching frames' spans (nested matches count once).
  hits.sort(function (a, b) { return a[0] - b[0]; });
  var covered = 0, end = -1;
  hits.forEach(function (h) {
    var s = Math.max(h[0], end), e = h[0] + h[1];
    if (e > s) covered += e - s;
    end = Math.max(end, e);
  });
  matched.textContent = term === "" ? "" : "Matched: " + (100 * covered / W).toFixed(1) + "%";
});
layout();
)JS";

}  // namespace

void write_flame_graph_svg(const Profile& profile, const std::string& title, std::ostream& out) {
    FlameNode root;
    for (const auto& [stack, count] : profile.stacks()) {
        root.total += count;
        FlameNode* node = &root;
        for (std::uint32_t id : stack) {
            node = &node->children[id];
            node->frame = id;
            node->total += count;
        }
    }
    const int max_depth = std::max(1, depth_of(root));
    const double height = kTop + (max_depth + 1) * kFrameHeight + 30;
    const double total = static_cast<double>(std::max<std::uint64_t>(1, root.total));
    const double per_sample = (kWidth - 2 * kPad) / total;
    out << "<?xml version=\"1.0\" standalone=\"no\"?>\n";
    out << fmt::format(
        "<svg version=\"1.1\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
        "xmlns=\"http://www.w3.org/2000/svg\">\n",
        kWidth, height, kWidth, height);
    out << "<style>text{font-family:monospace;font-size:12px;fill:#000}g.f{cursor:pointer}"
           "g.f:hover rect{stroke:#000;stroke-width:0.5}.b{cursor:pointer;fill:#246}</style>\n";
    out << fmt::format("<rect width=\"100%\" height=\"100%\" fill=\"#f8f8f0\"/>\n");
    out << fmt::format(
        "<text x=\"{}\" y=\"20\" text-anchor=\"middle\" style=\"font-size:16px\">{}</text>\n",
        kWidth / 2, xml_escape(title));
    out << fmt::format("<text id=\"reset\" class=\"b\" x=\"{}\" y=\"20\">Reset zoom</text>\n",
                       kPad);
    out << fmt::format(
        "<text id=\"search\" class=\"b\" x=\"{}\" y=\"20\" text-anchor=\"end\">Search</text>\n",
        kWidth - kPad);
    out << fmt::format("<text id=\"matched\" x=\"{}\" y=\"{}\" text-anchor=\"end\"></text>\n",
                       kWidth - kPad, height - 10);
    out << fmt::format(
        "<text x=\"{}\" y=\"{}\">{} samples at {} Hz; click a frame to zoom</text>\n", kPad,
        height - 10, profile.total_samples(), profile.frequency_hz);
    // The root: every sample, drawn as "all".
    out << fmt::format(
        "<g class=\"f\" data-x=\"{:.3f}\" data-w=\"{:.3f}\" data-d=\"0\"><title>all ({} "
        "samples)</title><rect x=\"{}\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" "
        "fill=\"rgb(220,200,180)\" rx=\"2\"/><text x=\"{}\" y=\"{:.1f}\"></text><desc>all</desc>"
        "</g>\n",
        kPad, kWidth - 2 * kPad, root.total, kPad, kTop + max_depth * kFrameHeight,
        kWidth - 2 * kPad, kFrameHeight - 1, kPad + 3, kTop + max_depth * kFrameHeight + 12);
    double x = kPad;
    for (const auto& [id, child] : root.children) {
        draw(profile, child, x, 1, max_depth, per_sample, total, out);
        x += static_cast<double>(child.total) * per_sample;
    }
    out << "<script type=\"text/ecmascript\"><![CDATA[" << kFlameScript << "]]></script>\n";
    out << "</svg>\n";
}

}  // namespace loupe::profile
