// ctxpp-audit — compilation database, compiler arguments and the worker threads.
#include "driver.hpp"

#include <clang/AST/ASTConsumer.h>
#include <clang/AST/ASTContext.h>
#include <clang/Basic/Diagnostic.h>
#include <clang/Basic/SourceManager.h>
#include <clang/Driver/Options.h>
#include <clang/Frontend/CompilerInstance.h>
#include <clang/Frontend/FrontendAction.h>
#include <clang/Tooling/ArgumentsAdjusters.h>
#include <clang/Tooling/CompilationDatabase.h>
#include <clang/Tooling/Tooling.h>
#include <llvm/Option/ArgList.h>
#include <llvm/Option/OptTable.h>
#include <llvm/Support/FileSystem.h>
#include <llvm/Support/Path.h>
#include <llvm/Support/Regex.h>
#include <llvm/Support/VirtualFileSystem.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "analyzer.hpp"

#ifndef CTXPP_AUDIT_RESOURCE_DIR
#define CTXPP_AUDIT_RESOURCE_DIR ""
#endif

namespace ctxpp::audit {

namespace {

using clang::tooling::CommandLineArguments;
using clang::tooling::CompileCommand;

// The commands, looked up once on the main thread: workers then only read them.
class PreparedDatabase : public clang::tooling::CompilationDatabase {
 public:
  void add(const std::string& file, CompileCommand command) {
    command.Filename = file;
    commands_[file] = {std::move(command)};
  }
  std::vector<CompileCommand> getCompileCommands(llvm::StringRef file) const override {
    auto it = commands_.find(file.str());
    return it == commands_.end() ? std::vector<CompileCommand>{} : it->second;
  }

 private:
  std::map<std::string, std::vector<CompileCommand>> commands_;
};

// Drops the options clang does not know (a g++ database carries some), which would
// otherwise fail the whole file.
CommandLineArguments strip_unknown_options(const CommandLineArguments& args) {
  if (args.size() < 2) return args;
  std::vector<const char*> argv;
  for (std::size_t i = 1; i < args.size(); ++i) argv.push_back(args[i].c_str());
  unsigned missing_index = 0;
  unsigned missing_count = 0;
  const llvm::opt::InputArgList parsed =
      clang::driver::getDriverOptTable().ParseArgs(argv, missing_index, missing_count);
  std::vector<bool> drop(args.size(), false);
  for (const llvm::opt::Arg* arg : parsed) {
    if (arg->getOption().getKind() == llvm::opt::Option::UnknownClass) {
      drop[arg->getIndex() + 1] = true;
    }
  }
  CommandLineArguments out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (!drop[i]) out.push_back(args[i]);
  }
  return out;
}

std::string resource_dir() {
  // A relocated install finds it next to the LLVM it was built with, as configured.
  return CTXPP_AUDIT_RESOURCE_DIR;
}

CommandLineArguments add_arguments(const CommandLineArguments& args,
                                   const std::vector<std::string>& extra) {
  if (args.empty()) return args;
  CommandLineArguments out{args.front()};
  const std::string dir = resource_dir();
  if (!dir.empty()) out.push_back("-resource-dir=" + dir);
  auto end = std::find(args.begin() + 1, args.end(), "--");
  out.insert(out.end(), args.begin() + 1, end);
  // Warnings are not ours to report, and -Werror must not turn them into failures.
  out.push_back("-Wno-unknown-warning-option");
  out.push_back("-Wno-error");
  out.push_back("-w");
  out.push_back("-fno-caret-diagnostics");  // also drops clang's "N errors generated."
  out.insert(out.end(), extra.begin(), extra.end());
  out.insert(out.end(), end, args.end());
  return out;
}

// Keeps the first error of a file; warnings and notes are dropped.
class ErrorCollector : public clang::DiagnosticConsumer {
 public:
  void HandleDiagnostic(clang::DiagnosticsEngine::Level level,
                        const clang::Diagnostic& info) override {
    clang::DiagnosticConsumer::HandleDiagnostic(level, info);
    if (level < clang::DiagnosticsEngine::Error || !first_.empty()) return;
    llvm::SmallString<256> text;
    info.FormatDiagnostic(text);
    std::string where;
    if (info.hasSourceManager() && info.getLocation().isValid()) {
      const clang::SourceManager& sm = info.getSourceManager();
      const clang::PresumedLoc p = sm.getPresumedLoc(sm.getFileLoc(info.getLocation()));
      if (p.isValid()) {
        where = std::string(p.getFilename()) + ":" + std::to_string(p.getLine()) + ":" +
                std::to_string(p.getColumn()) + ": ";
      }
    }
    first_ = where + std::string(text);
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

class AuditConsumer : public clang::ASTConsumer {
 public:
  AuditConsumer(const Config& config, const FileFilter& filter, TuResult& out)
      : config_(config), filter_(filter), out_(out) {}
  void HandleTranslationUnit(clang::ASTContext& ast) override {
    // A broken AST yields bogus findings: the file is reported as failed instead.
    if (ast.getDiagnostics().hasErrorOccurred()) return;
    analyze_translation_unit(ast, config_, filter_, out_);
  }
  // No rule looks into system headers: not parsing their inline bodies saves time.
  // Sema still parses those it must (constexpr, deduced return types).
  bool shouldSkipFunctionBody(clang::Decl* d) override {
    return sm_ != nullptr && sm_->isInSystemHeader(sm_->getExpansionLoc(d->getLocation()));
  }
  void Initialize(clang::ASTContext& ast) override { sm_ = &ast.getSourceManager(); }

 private:
  const Config& config_;
  const FileFilter& filter_;
  TuResult& out_;
  const clang::SourceManager* sm_ = nullptr;
};

class AuditAction : public clang::ASTFrontendAction {
 public:
  AuditAction(const Config& config, const FileFilter& filter, TuResult& out)
      : config_(config), filter_(filter), out_(out) {}
  std::unique_ptr<clang::ASTConsumer> CreateASTConsumer(clang::CompilerInstance& ci,
                                                        llvm::StringRef) override {
    ci.getFrontendOpts().SkipFunctionBodies = true;  // asks AuditConsumer, body by body
    return std::make_unique<AuditConsumer>(config_, filter_, out_);
  }

 private:
  const Config& config_;
  const FileFilter& filter_;
  TuResult& out_;
};

class AuditFactory : public clang::tooling::FrontendActionFactory {
 public:
  AuditFactory(const Config& config, const FileFilter& filter, TuResult& out)
      : config_(config), filter_(filter), out_(out) {}
  std::unique_ptr<clang::FrontendAction> create() override {
    return std::make_unique<AuditAction>(config_, filter_, out_);
  }

 private:
  const Config& config_;
  const FileFilter& filter_;
  TuResult& out_;
};

std::string absolute(const std::string& path) {
  llvm::SmallString<256> p(path);
  llvm::sys::fs::make_absolute(p);
  llvm::sys::path::remove_dots(p, true);
  return std::string(p);
}

void audit_one(const PreparedDatabase& db, const std::string& file, const Config& config,
               const FileFilter& filter, const std::vector<std::string>& extra, TuResult& out) {
  // A private physical file system: the shared one would change the process's working
  // directory under the other threads.
  llvm::IntrusiveRefCntPtr<llvm::vfs::FileSystem> fs(
      llvm::vfs::createPhysicalFileSystem().release());
  clang::tooling::ClangTool tool(db, {file}, std::make_shared<clang::PCHContainerOperations>(), fs);
  tool.setRestoreWorkingDir(false);
  tool.setPrintErrorMessage(false);
  tool.appendArgumentsAdjuster(clang::tooling::getClangStripOutputAdjuster());
  tool.appendArgumentsAdjuster(clang::tooling::getClangStripDependencyFileAdjuster());
  tool.appendArgumentsAdjuster(clang::tooling::getClangSyntaxOnlyAdjuster());
  tool.appendArgumentsAdjuster([](const CommandLineArguments& args, llvm::StringRef) {
    return strip_unknown_options(args);
  });
  tool.appendArgumentsAdjuster([&extra](const CommandLineArguments& args, llvm::StringRef) {
    return add_arguments(args, extra);
  });
  ErrorCollector errors;
  tool.setDiagnosticConsumer(&errors);
  AuditFactory factory(config, filter, out);
  const int rc = tool.run(&factory);
  if (rc != 0 || errors.getNumErrors() > 0) {
    out.failed = true;
    out.error = errors.first().empty() ? "the compiler could not parse this file"
                                       : "failed to parse: " + errors.first();
  }
}

}  // namespace

bool run_audit(const DriverOptions& options, AuditResult& result, std::string& error) {
  if (!llvm::sys::fs::is_directory(options.build_dir)) {
    error = "-p " + options.build_dir + ": no such directory";
    return false;
  }
  std::string db_error;
  std::unique_ptr<clang::tooling::CompilationDatabase> db =
      clang::tooling::CompilationDatabase::autoDetectFromDirectory(options.build_dir, db_error);
  if (db == nullptr) {
    error = "no compilation database in '" + options.build_dir + "': " + db_error +
            " (configure with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON)";
    return false;
  }
  std::vector<std::string> files;
  if (options.files.empty()) {
    for (const std::string& f : db->getAllFiles()) files.push_back(absolute(f));
  } else {
    for (const std::string& f : options.files) files.push_back(absolute(f));
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  // Headers named on the command line borrow a neighbour's command.
  db = clang::tooling::inferMissingCompileCommands(std::move(db));

  std::shared_ptr<llvm::Regex> header_regex;
  if (options.header_filter) {
    header_regex = std::make_shared<llvm::Regex>(*options.header_filter);
    std::string regex_error;
    if (!header_regex->isValid(regex_error)) {
      error = "bad --header-filter '" + *options.header_filter + "': " + regex_error;
      return false;
    }
  }
  // llvm::Regex::match is const and reentrant.
  const FileFilter filter = [header_regex](const std::string& path) {
    return header_regex == nullptr || header_regex->match(path);
  };

  // Configs, loaded before any thread starts so that a bad one stops everything.
  std::map<std::string, std::shared_ptr<Config>> configs;
  std::vector<std::shared_ptr<Config>> config_of(files.size());
  for (std::size_t i = 0; i < files.size(); ++i) {
    const std::string path =
        options.config_path.empty() ? find_config_for(files[i]) : options.config_path;
    auto& slot = configs[path];
    if (slot == nullptr) {
      slot = std::make_shared<Config>();
      if (!path.empty() && !load_config(path, *slot, error)) return false;
    }
    config_of[i] = slot;
  }

  PreparedDatabase prepared;
  std::vector<TuResult> parts(files.size());
  std::vector<std::size_t> runnable;
  for (std::size_t i = 0; i < files.size(); ++i) {
    parts[i].file = files[i];
    auto commands = db->getCompileCommands(files[i]);
    if (commands.empty()) {
      parts[i].failed = true;
      parts[i].error = "no compile command in " + options.build_dir + "/compile_commands.json";
      continue;
    }
    prepared.add(files[i], std::move(commands.front()));
    runnable.push_back(i);
  }

  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (;;) {
      const std::size_t n = next.fetch_add(1);
      if (n >= runnable.size()) return;
      const std::size_t i = runnable[n];
      audit_one(prepared, files[i], *config_of[i], filter, options.extra_args, parts[i]);
    }
  };
  const unsigned jobs =
      std::max(1u, std::min<unsigned>(options.jobs, static_cast<unsigned>(runnable.size())));
  std::vector<std::thread> threads;
  for (unsigned t = 1; t < jobs; ++t) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();

  result = merge_results(std::move(parts));
  return true;
}

}  // namespace ctxpp::audit
