// ctxpp-audit — the per-translation-unit analysis.
#pragma once

#include <functional>
#include <string>

#include "audit.hpp"

namespace clang {
class ASTContext;
}

namespace ctxpp::audit {

/// Which files' functions to analyse: the main file always; a header when this says
/// so. Called with absolute paths; must be safe to call from several threads at once.
using FileFilter = std::function<bool(const std::string& path)>;

/// Runs every rule and the inventory collection over the function definitions of one
/// parsed translation unit that lie outside system headers and pass `filter`.
/// Findings already carry their configured severity; suppressed ones are dropped.
/// Cost: one walk of each function body. Thread safety: touches only `ast` and `out`.
void analyze_translation_unit(clang::ASTContext& ast, const Config& config,
                              const FileFilter& filter, TuResult& out);

}  // namespace ctxpp::audit
