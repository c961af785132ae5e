// The demo page served at "/" (edge/demo/index.html, embedded at build time).
#ifndef ROOMCAST_EDGE_DEMO_PAGE_H_
#define ROOMCAST_EDGE_DEMO_PAGE_H_

#include "absl/strings/string_view.h"

namespace roomcast::edge {

absl::string_view DemoPage();

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_DEMO_PAGE_H_
