#include "benchmarks/bench_plot.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace roomcast::bench {
namespace {

// Plot area inside a kWidth x kHeight canvas.
constexpr double kWidth = 960;
constexpr double kHeight = 540;
constexpr double kLeft = 80;
constexpr double kRight = kWidth - 100;
constexpr double kTop = 70;
constexpr double kBottom = kHeight - 110;

std::string Escape(const std::string& text) {
  std::string out;
  for (char c : text) {
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
        out += c;
    }
  }
  return out;
}

std::string Text(double x, double y, const std::string& text, const std::string& attrs = "") {
  return absl::StrFormat("<text x=\"%.1f\" y=\"%.1f\" %s>%s</text>\n", x, y, attrs, Escape(text));
}

std::string Line(double x1, double y1, double x2, double y2, const std::string& attrs) {
  return absl::StrFormat("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" %s/>\n", x1, y1, x2,
                         y2, attrs);
}

// 1234567 -> "1.2M", 25000 -> "25k", 50 -> "50".
std::string Short(double v) {
  if (v >= 1e6) return absl::StrFormat("%gM", std::round(v / 1e5) / 10);
  if (v >= 1e3) return absl::StrFormat("%gk", std::round(v / 1e2) / 10);
  return absl::StrFormat("%g", std::round(v * 10) / 10);
}

// 0.1 -> "0.1", 1000 -> "1000" (ms tick labels).
std::string MsLabel(double ms) { return absl::StrFormat("%g", ms); }

// Smallest of 1, 2, 5 x 10^k that is >= v (v > 0).
double NiceCeil(double v) {
  const double p = std::pow(10, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * p >= v * (1 - 1e-9)) return m * p;
  }
  return 10 * p;
}

struct Series {
  const char* name;
  const char* color;
  const char* dash;  // stroke-dasharray, "" for solid
  double (*value)(const StepReport&);
};

double P50(const StepReport& s) { return s.delivery.latency.Percentile(50) / 1e6; }
double P90(const StepReport& s) { return s.delivery.latency.Percentile(90) / 1e6; }
double P99(const StepReport& s) { return s.delivery.latency.Percentile(99) / 1e6; }
double Max(const StepReport& s) { return s.delivery.latency.max() / 1e6; }

}  // namespace

std::string RenderPlotSvg(const RunReport& r) {
  std::string out = absl::StrFormat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
      "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" "
      "font-size=\"13\">\n"
      "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n",
      kWidth, kHeight, kWidth, kHeight, kWidth, kHeight);

  // Title: preset, transport, rooms, the fixed parameter, and when.
  const bool by_subscribers = r.preset == "ladder";
  const bool by_rate = r.preset == "fanout";
  std::string what = absl::StrCat("roomcast-bench ", r.preset, " (", r.transport);
  if (!r.steps.empty()) {
    const StepReport& s0 = r.steps.front();
    absl::StrAppend(&what, ", ", s0.rooms, s0.rooms == 1 ? " room" : " rooms");
    if (by_subscribers) {
      absl::StrAppend(&what, ", ",
                      s0.rate_per_room == 0 ? std::string("max rate")
                                            : absl::StrFormat("%g msgs/s", s0.rate_per_room));
    } else if (by_rate) {
      absl::StrAppend(&what, ", ", s0.subscribers, " subscribers");
    }
  }
  absl::StrAppend(&what, ")");
  out += Text(kWidth / 2, 28, what, "text-anchor=\"middle\" font-size=\"17\" font-weight=\"bold\"");
  out += Text(kWidth / 2, 48,
              absl::StrCat(r.started_at, "  ·  load average ", r.host_load, "  ·  ", r.edge),
              "text-anchor=\"middle\" fill=\"#555\"");

  if (r.steps.empty()) {
    out += Text(kWidth / 2, kHeight / 2, "no steps", "text-anchor=\"middle\"");
    return out + "</svg>\n";
  }

  // Scales. x: steps evenly spaced (ladder rungs and rate steps grow roughly
  // geometrically, so even spacing reads like a log axis).
  const size_t n = r.steps.size();
  const double slot = (kRight - kLeft) / static_cast<double>(n);
  auto x_of = [&](size_t i) { return kLeft + slot * (static_cast<double>(i) + 0.5); };

  const Series series[] = {
      {"p50", "#1f77b4", "", P50},
      {"p90", "#2ca02c", "", P90},
      {"p99", "#ff7f0e", "", P99},
      {"max", "#d62728", "6 4", Max},
  };
  double lo = INFINITY, hi = 0;
  for (const StepReport& s : r.steps) {
    if (s.delivery.latency.count() == 0) continue;
    for (const Series& ser : series) {
      const double v = ser.value(s);
      if (v > 0) lo = std::min(lo, v), hi = std::max(hi, v);
    }
  }
  if (!(hi > 0)) lo = 0.1, hi = 1;
  const int lo_exp = static_cast<int>(std::floor(std::log10(lo)));
  int hi_exp = static_cast<int>(std::ceil(std::log10(hi)));
  if (hi_exp <= lo_exp) hi_exp = lo_exp + 1;
  auto y_ms = [&](double ms) {
    const double f = (std::log10(ms) - lo_exp) / (hi_exp - lo_exp);
    return kBottom - f * (kBottom - kTop);
  };

  double most = 0;
  for (const StepReport& s : r.steps) most = std::max(most, s.delivered_per_second);
  const double top_rate = most > 0 ? NiceCeil(most) : 1;
  auto y_rate = [&](double v) { return kBottom - v / top_rate * (kBottom - kTop); };

  // Throughput bars first (behind the lines).
  for (size_t i = 0; i < n; ++i) {
    const double v = r.steps[i].delivered_per_second;
    const double w = std::min(slot * 0.55, 60.0);
    out += absl::StrFormat(
        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#c7c7e8\" "
        "fill-opacity=\"0.75\"><title>%s: %.0f delivered/s</title></rect>\n",
        x_of(i) - w / 2, y_rate(v), w, kBottom - y_rate(v), Escape(r.steps[i].label), v);
  }

  // Left axis: decades labelled, 2x and 5x as minor grid lines.
  for (int e = lo_exp; e <= hi_exp; ++e) {
    const double ms = std::pow(10, e);
    out += Line(kLeft, y_ms(ms), kRight, y_ms(ms), "stroke=\"#ccc\"");
    out += Text(kLeft - 8, y_ms(ms) + 4, MsLabel(ms), "text-anchor=\"end\"");
    if (e == hi_exp) break;
    for (double m : {2.0, 5.0}) {
      out += Line(kLeft, y_ms(m * ms), kRight, y_ms(m * ms),
                  "stroke=\"#eee\" stroke-dasharray=\"2 3\"");
      out += Text(kLeft - 8, y_ms(m * ms) + 4, MsLabel(m * ms),
                  "text-anchor=\"end\" fill=\"#999\" font-size=\"10\"");
    }
  }
  // Right axis: five linear ticks.
  for (int k = 0; k <= 5; ++k) {
    const double v = top_rate * k / 5;
    out += Line(kRight, y_rate(v), kRight + 5, y_rate(v), "stroke=\"#336\"");
    out += Text(kRight + 8, y_rate(v) + 4, Short(v), "fill=\"#336\"");
  }
  out += Line(kLeft, kTop, kLeft, kBottom, "stroke=\"#333\"");
  out += Line(kRight, kTop, kRight, kBottom, "stroke=\"#336\"");
  out += Line(kLeft, kBottom, kRight, kBottom, "stroke=\"#333\"");
  out += absl::StrFormat(
      "<text transform=\"translate(22 %.1f) rotate(-90)\" text-anchor=\"middle\">"
      "publish → receive latency (ms, log scale)</text>\n",
      (kTop + kBottom) / 2);
  out += absl::StrFormat(
      "<text transform=\"translate(%.1f %.1f) rotate(90)\" text-anchor=\"middle\" "
      "fill=\"#336\">delivered messages/s (bars)</text>\n",
      kWidth - 22, (kTop + kBottom) / 2);

  // x ticks: the step's value; unsustainable steps in red with their verdict.
  for (size_t i = 0; i < n; ++i) {
    const StepReport& s = r.steps[i];
    std::string tick = by_subscribers ? Short(s.subscribers)
                       : by_rate
                           ? (s.rate_per_room == 0 ? std::string("max") : Short(s.rate_per_room))
                           : s.label;
    out += Line(x_of(i), kBottom, x_of(i), kBottom + 5, "stroke=\"#333\"");
    out += Text(x_of(i), kBottom + 19, tick,
                s.sustainable ? "text-anchor=\"middle\""
                              : "text-anchor=\"middle\" fill=\"#d62728\" font-weight=\"bold\"");
    if (!s.sustainable) {
      out += absl::StrFormat(
          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#d62728\" "
          "font-size=\"10\">✗<title>%s</title></text>\n",
          x_of(i), kBottom + 32, Escape(s.verdict));
    }
  }
  out += Text((kLeft + kRight) / 2, kBottom + 50,
              by_subscribers ? "subscribers (one rung per step)"
              : by_rate      ? "publish rate per room (msgs/s, one step each)"
                             : "step",
              "text-anchor=\"middle\"");

  // Latency lines with markers (a step without samples breaks the line).
  for (const Series& ser : series) {
    std::string path;
    bool pen_down = false;
    for (size_t i = 0; i < n; ++i) {
      const StepReport& s = r.steps[i];
      const double v = s.delivery.latency.count() > 0 ? ser.value(s) : 0;
      if (v <= 0) {
        pen_down = false;
        continue;
      }
      absl::StrAppend(&path, pen_down ? " L" : " M",
                      absl::StrFormat("%.1f %.1f", x_of(i), y_ms(v)));
      pen_down = true;
      out += absl::StrFormat(
          "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>%s %s: %.3g ms</title>"
          "</circle>\n",
          x_of(i), y_ms(v), ser.color, Escape(s.label), ser.name, v);
    }
    if (!path.empty()) {
      out += absl::StrFormat(
          "<path d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", path.substr(1),
          ser.color,
          *ser.dash ? absl::StrCat(" stroke-dasharray=\"", ser.dash, "\"") : std::string());
    }
  }

  // Legend, below the x axis label.
  double lx = kLeft;
  const double ly = kHeight - 22;
  for (const Series& ser : series) {
    out += absl::StrFormat(
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
        "stroke-width=\"2\"%s/>\n",
        lx, ly - 4, lx + 24, ly - 4, ser.color,
        *ser.dash ? absl::StrCat(" stroke-dasharray=\"", ser.dash, "\"") : std::string());
    out += Text(lx + 30, ly, absl::StrCat("latency ", ser.name));
    lx += 125;
  }
  out += absl::StrFormat(
      "<rect x=\"%.1f\" y=\"%.1f\" width=\"24\" height=\"12\" fill=\"#c7c7e8\"/>\n", lx, ly - 10);
  out += Text(lx + 30, ly, "delivered/s");
  out += Text(lx + 130, ly, "✗ red = not sustainable", "fill=\"#d62728\"");
  return out + "</svg>\n";
}

}  // namespace roomcast::bench
