// ctxpp-audit — the rules. One hand-written walk per function body keeps a stack of
// parents, so each reference to a context, a cancel function or a resource can be
// judged by what consumes it without building clang's whole-TU parent map.
#include "analyzer.hpp"

#include <clang/AST/ASTContext.h>
#include <clang/AST/Attr.h>
#include <clang/AST/Decl.h>
#include <clang/AST/DeclCXX.h>
#include <clang/AST/DeclFriend.h>
#include <clang/AST/DeclTemplate.h>
#include <clang/AST/Expr.h>
#include <clang/AST/ExprCXX.h>
#include <clang/AST/Stmt.h>
#include <clang/AST/StmtCXX.h>
#include <clang/Basic/SourceManager.h>
#include <llvm/Support/FileSystem.h>
#include <llvm/Support/Path.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

namespace ctxpp::audit {

namespace {

using namespace clang;

// ------------------------------------------------------------------------------------
// Built-in knowledge.

constexpr std::string_view kContextType = "ctxpp::Context";

// Functions that block the calling thread and take no context.
constexpr std::string_view kBlocking[] = {
    "std::this_thread::sleep_for",
    "std::this_thread::sleep_until",
    "::sleep",
    "::usleep",
    "::nanosleep",
    "::clock_nanosleep",
    "::read",
    "::readv",
    "::pread",
    "::recv",
    "::recvfrom",
    "::recvmsg",
    "::accept",
    "::accept4",
    "::connect",
    "std::condition_variable::wait",
    "std::condition_variable_any::wait",
    "std::future::get",
    "std::future::wait",
    "std::shared_future::get",
    "std::shared_future::wait",
    "std::thread::join",
    "std::jthread::join",
    "std::latch::wait",
    "std::barrier::arrive_and_wait",
    "std::counting_semaphore::acquire",
    "::sqlite3_step",
    "::sqlite3_exec",
    "::PQexec",
    "::PQexecParams",
    "::PQexecPrepared",
    "::PQprepare",
    "::PQconnectdb",
    "::PQconnectdbParams",
    "::PQsetdbLogin",
    "::curl_easy_perform",
    "::getaddrinfo",
    "::gethostbyname",
    "::gethostbyname_r",
};

// No callback can wake these early; everything else may be interrupted by a
// cancellation callback that closes the descriptor, notifies the condition, interrupts
// the statement...
constexpr std::string_view kSleeps[] = {"std::this_thread::sleep_for",
                                        "std::this_thread::sleep_until",
                                        "::sleep",
                                        "::usleep",
                                        "::nanosleep",
                                        "::clock_nanosleep"};

// Block only with an infinite timeout: {name, timeout argument, "negative" or "null"}.
struct TimeoutCall {
  std::string_view name;
  unsigned arg;
  bool null_means_infinite;
};
constexpr TimeoutCall kTimeoutCalls[] = {
    {"::poll", 2, false},
    {"::epoll_wait", 3, false},
    {"::ppoll", 2, true},
    {"::select", 4, true},
};

constexpr std::string_view kWrappers[] = {"ctxpp::call_blocking"};

// Functions that derive a context: passing a context to them is not a check.
constexpr std::string_view kDerive[] = {
    "ctxpp::with_cancel",     "ctxpp::with_cancel_cause",   "ctxpp::with_deadline",
    "ctxpp::with_timeout",    "ctxpp::with_deadline_cause", "ctxpp::with_timeout_cause",
    "ctxpp::merge",           "ctxpp::with_value",          "ctxpp::without_cancel",
    "ctxpp::with_stop_token",
};

// Functions that return a WithCancel{ctx, cancel}.
constexpr std::string_view kWithCancel[] = {
    "ctxpp::with_cancel",  "ctxpp::with_cancel_cause",   "ctxpp::with_deadline",
    "ctxpp::with_timeout", "ctxpp::with_deadline_cause", "ctxpp::with_timeout_cause",
    "ctxpp::merge",
};

struct ResourceKind {
  std::string_view name;
  std::string_view kind;
  int out_arg;  // the argument that receives the handle, -1: the return value
};
constexpr ResourceKind kResources[] = {
    {"::fopen", "file", -1},
    {"::fdopen", "file", -1},
    {"::tmpfile", "file", -1},
    {"::open", "file", -1},
    {"::openat", "file", -1},
    {"::creat", "file", -1},
    {"::socket", "socket", -1},
    {"::accept", "socket", -1},
    {"::accept4", "socket", -1},
    {"::socketpair", "socket", 3},
    {"::pipe", "fd", 0},
    {"::pipe2", "fd", 0},
    {"::eventfd", "fd", -1},
    {"::epoll_create", "fd", -1},
    {"::epoll_create1", "fd", -1},
    {"::timerfd_create", "fd", -1},
    {"::dup", "fd", -1},
    {"::malloc", "memory", -1},
    {"::calloc", "memory", -1},
    {"::realloc", "memory", -1},
    {"::strdup", "memory", -1},
    {"::mmap", "memory", -1},
    {"::pthread_create", "thread", 0},
    {"::sqlite3_open", "sqlite", 1},
    {"::sqlite3_open_v2", "sqlite", 1},
    {"::sqlite3_prepare_v2", "sqlite", 3},
    {"::sqlite3_prepare_v3", "sqlite", 4},
    {"::PQconnectdb", "postgres", -1},
    {"::PQconnectdbParams", "postgres", -1},
    {"::PQconnectStart", "postgres", -1},
    {"::PQconnectStartParams", "postgres", -1},
    {"::PQsetdbLogin", "postgres", -1},
    {"::curl_easy_init", "curl", -1},
    {"ctxpp::Pool::acquire", "pool", -1},
    {"ctxpp::Pool::try_acquire", "pool", -1},
};

// Registering one of these makes the enclosing function's blocking calls interruptible.
constexpr std::string_view kCallbacks[] = {"ctxpp::ScopedCallback", "ctxpp::after_func",
                                           "std::stop_callback", "::sqlite3_progress_handler"};

// A lambda handed to these runs on another thread: it does not block the function.
constexpr std::string_view kThreadStarts[] = {"std::thread", "std::jthread", "std::async"};

// Scope guards whose function argument releases what it references.
constexpr std::string_view kGuards[] = {"ctxpp::defer", "ctxpp::Defer"};

template <std::size_t N>
bool matches_any(std::string_view name, const std::string_view (&list)[N]) {
  return std::any_of(std::begin(list), std::end(list),
                     [&](std::string_view p) { return name_matches(name, p); });
}

bool matches_any(std::string_view name, const std::vector<std::string>& list) {
  return std::any_of(list.begin(), list.end(),
                     [&](const std::string& p) { return name_matches(name, p); });
}

// ------------------------------------------------------------------------------------
// Names.

std::string record_name(const CXXRecordDecl* rd) {
  if (const auto* spec = dyn_cast<ClassTemplateSpecializationDecl>(rd)) {
    return spec->getSpecializedTemplate()->getQualifiedNameAsString();
  }
  return rd->getQualifiedNameAsString();
}

std::string function_name(const FunctionDecl* fd) {
  if (const auto* method = dyn_cast<CXXMethodDecl>(fd)) {
    return record_name(method->getParent()) + "::" + fd->getNameAsString();
  }
  return fd->getQualifiedNameAsString();
}

// The declaration a call names, also in templates where it is still unresolved.
const NamedDecl* callee_decl(const Expr* e) {
  if (const auto* call = dyn_cast<CallExpr>(e)) {
    if (const auto* fd = call->getDirectCallee()) return fd;
    const Expr* callee = call->getCallee()->IgnoreParenImpCasts();
    if (const auto* lookup = dyn_cast<UnresolvedLookupExpr>(callee)) {
      for (const NamedDecl* d : lookup->decls()) {
        if (const auto* tmpl = dyn_cast<FunctionTemplateDecl>(d)) return tmpl->getTemplatedDecl();
        if (isa<FunctionDecl>(d)) return d;
      }
    }
    if (const auto* member = dyn_cast<UnresolvedMemberExpr>(callee)) {
      for (const NamedDecl* d : member->decls()) {
        if (const auto* tmpl = dyn_cast<FunctionTemplateDecl>(d)) return tmpl->getTemplatedDecl();
        if (isa<FunctionDecl>(d)) return d;
      }
    }
    return nullptr;
  }
  if (const auto* construct = dyn_cast<CXXConstructExpr>(e)) return construct->getConstructor();
  return nullptr;
}

// x.f() on an object of dependent type: "std::future::get" from the template's name.
std::string dependent_member_name(const Expr* e) {
  const auto* call = dyn_cast<CallExpr>(e);
  if (call == nullptr) return {};
  const auto* member = dyn_cast<CXXDependentScopeMemberExpr>(call->getCallee()->IgnoreParens());
  if (member == nullptr || member->isImplicitAccess()) return {};
  QualType base = member->getBaseType();
  if (base.isNull()) return {};
  if (member->isArrow() && base->isPointerType()) base = base->getPointeeType();
  base = base.getNonReferenceType();
  std::string owner;
  if (const auto* spec = base->getAs<TemplateSpecializationType>()) {
    if (const TemplateDecl* t = spec->getTemplateName().getAsTemplateDecl()) {
      owner = t->getQualifiedNameAsString();
    }
  } else if (const auto* rd = base->getAsCXXRecordDecl()) {
    owner = record_name(rd);
  }
  if (owner.empty()) return {};
  return owner + "::" + member->getMember().getAsString();
}

std::string callee_name(const Expr* e) {
  const NamedDecl* d = callee_decl(e);
  if (d == nullptr) return dependent_member_name(e);
  if (const auto* ctor = dyn_cast<CXXConstructorDecl>(d)) return record_name(ctor->getParent());
  if (const auto* fd = dyn_cast<FunctionDecl>(d)) return function_name(fd);
  return d->getQualifiedNameAsString();
}

bool in_ctxpp(std::string_view name) { return name.starts_with("ctxpp::"); }

std::string broken_chain_message(const std::string& what) {
  return "'" + what +
         "' starts a new root where a context is in scope: cancellation from the caller is "
         "cut off; derive from the context in scope (or use ctxpp::without_cancel for work "
         "that must outlive it)";
}

// Nodes that only convert, copy or move what is below them.
bool transparent(const Stmt* s) {
  if (isa<ImplicitCastExpr, ParenExpr, MaterializeTemporaryExpr, CXXBindTemporaryExpr,
          ExprWithCleanups, ConstantExpr>(s)) {
    return true;
  }
  if (const auto* construct = dyn_cast<CXXConstructExpr>(s)) {
    const auto* ctor = construct->getConstructor();
    return construct->getNumArgs() == 1 && ctor != nullptr && ctor->isCopyOrMoveConstructor();
  }
  if (const auto* call = dyn_cast<CallExpr>(s)) {
    if (call->getNumArgs() != 1) return false;
    const std::string name = callee_name(call);
    return name == "std::move" || name == "std::forward";
  }
  return false;
}

bool is_void_cast(const Stmt* s) {
  const auto* cast = dyn_cast<ExplicitCastExpr>(s);
  return cast != nullptr && cast->getType()->isVoidType();
}

const CXXRecordDecl* record_of(QualType t) {
  if (t.isNull()) return nullptr;
  t = t.getNonReferenceType();
  if (t->isPointerType()) t = t->getPointeeType();
  return t->getAsCXXRecordDecl();
}

bool has_destructor(QualType t) {
  if (t.isNull() || t->isDependentType()) return false;
  const auto* rd = t.getNonReferenceType()->getAsCXXRecordDecl();
  return rd != nullptr && rd->hasDefinition() && rd->hasNonTrivialDestructor() &&
         record_name(rd) != "std::thread";
}

// ------------------------------------------------------------------------------------
// One function at a time.

struct Frame {
  const LambdaExpr* lambda = nullptr;  // null: the function itself
  bool has_context = false;
  const VarDecl* lambda_var = nullptr;  // the local this lambda initialises
  std::size_t depth = 0;
};

// How one reference to a variable is consumed.
struct Ref {
  bool discarded = false;            // (void)x
  std::string member;                // x.member (x.done, r.cancel)
  bool member_call = false;          // x.member(...)
  const VarDecl* init_of = nullptr;  // T y = x; / T y = x.member; (possibly moved)
  bool ctxpp_pass = false;           // passed to a ctxpp function that observes it
};

struct PendingBlocking {
  SourceLocation loc;
  std::string name;
  bool has_context;
  bool sleep;
  bool wrapped;
  bool in_lambda;
  std::vector<const VarDecl*> lambda_vars;
  std::vector<std::size_t> loops;  // enclosing loops of the same frame
};

struct PendingLoop {
  SourceLocation loc;
  bool unbounded = false;
  bool touched = false;
  std::size_t frame_depth = 0;
  bool has_context = false;
  std::vector<std::size_t> blocking;  // indexes into blocking_
};

enum class WithUse { discarded, ctx_only, binding, variable, kept };

struct PendingWith {
  SourceLocation loc;
  std::string name;
  WithUse use = WithUse::kept;
  const ValueDecl* decl = nullptr;
};

struct PendingResource {
  ResourceEntry entry;
  const VarDecl* var = nullptr;  // raw handle held here, if any
};

struct ContextParam {
  const ParmVarDecl* param;
  SourceLocation report_at;
  bool is_function;  // false: a lambda's parameter
  bool empty_body;   // nothing runs, so nothing is left to cancel (a no-op default)
};

bool is_empty_body(const Stmt* body) {
  const auto* block = dyn_cast_or_null<CompoundStmt>(body);
  return block != nullptr && block->body_empty();
}

class Analyzer;

class FunctionWalker {
 public:
  FunctionWalker(Analyzer& a, const FunctionDecl* fd) : a_(a), fd_(fd) {}
  void run();

 private:
  void walk(const Stmt* s);
  void visit_lambda(const LambdaExpr* lambda);
  void visit_decl_ref(const DeclRefExpr* ref);
  void visit_call(const Expr* call, const std::string& name);
  void visit_resource(const Expr* e, std::string_view kind, std::string_view call, int out_arg);
  void touch_loops();
  void finish();

  bool is_context_expr(const Expr* e) const;
  bool blocking_here(const Expr* call, const std::string& name) const;
  const VarDecl* var_initialised_by(std::size_t index, const Stmt* child) const;
  // The first non-transparent ancestor of the node above stack_[from]: its index, and
  // in `below` the node under it on the path.
  std::size_t consumer(std::size_t from, const Stmt* node, const Stmt*& below) const;
  // How the node whose parent is stack_.back() is consumed.
  Ref classify(const Expr* subject) const;
  bool cancel_used(const ValueDecl* decl, int depth) const;
  bool with_var_cancel_used(const ValueDecl* decl) const;

  Analyzer& a_;
  const FunctionDecl* fd_;
  std::vector<const Stmt*> stack_;
  std::vector<Frame> frames_;
  std::vector<std::size_t> loops_;  // indexes into loops_pending_
  int wrapped_ = 0;
  bool class_has_context_ = false;
  bool interruptible_ = false;
  bool in_ctor_init_ = false;

  std::unordered_map<const ValueDecl*, std::vector<Ref>> refs_;
  std::unordered_set<const VarDecl*> wrapped_vars_;
  std::unordered_set<const VarDecl*> guarded_vars_;
  std::unordered_set<const VarDecl*> owned_vars_;
  std::vector<PendingBlocking> blocking_;
  std::vector<PendingLoop> loops_pending_;
  std::vector<PendingWith> withs_;
  std::vector<PendingResource> resources_;
  std::vector<ContextParam> ctx_params_;
  std::vector<SourceLocation> fresh_roots_;  // background()/todo() passed to a call
  std::vector<std::pair<SourceLocation, std::string>> member_roots_;  // CTX002 via a member
  bool sets_context_member_ = false;  // this method produces the member context itself
  int guard_depth_ = 0;
  int thread_start_ = 0;
};

class Analyzer {
 public:
  Analyzer(ASTContext& ast, const Config& config, const FileFilter& filter, TuResult& out)
      : ast_(ast), sm_(ast.getSourceManager()), config_(config), filter_(filter), out_(out) {}

  void run() { walk_context(ast_.getTranslationUnitDecl()); }

  bool is_context_type(QualType t) {
    if (t.isNull()) return false;
    const Type* key = t.getCanonicalType().getTypePtrOrNull();
    if (auto it = context_types_.find(key); it != context_types_.end()) return it->second;
    bool result = false;
    if (const auto* rd = record_of(t)) {
      const std::string name = record_name(rd);
      result = name == kContextType || matches_any(name, config_.context_types);
    }
    context_types_.emplace(key, result);
    return result;
  }

  bool is_stop_token(QualType t) {
    const auto* rd = record_of(t);
    return rd != nullptr && record_name(rd) == "std::stop_token";
  }

  bool is_blocking_name(const std::string& name) const {
    return matches_any(name, kBlocking) || matches_any(name, config_.blocking_functions);
  }
  bool is_wrapper_name(const std::string& name) const {
    return matches_any(name, kWrappers) || matches_any(name, config_.cancellable_wrappers);
  }

  bool wanted(SourceLocation loc) {
    if (loc.isInvalid()) return false;
    loc = sm_.getFileLoc(loc);
    if (sm_.isInSystemHeader(loc)) return false;
    const FileID fid = sm_.getFileID(loc);
    if (auto it = wanted_files_.find(fid); it != wanted_files_.end()) return it->second;
    const bool result = fid == sm_.getMainFileID() || filter_(path_of(fid));
    wanted_files_.emplace(fid, result);
    return result;
  }

  Location location(SourceLocation loc) {
    loc = sm_.getFileLoc(loc);
    return {path_of(sm_.getFileID(loc)), sm_.getSpellingLineNumber(loc),
            sm_.getSpellingColumnNumber(loc)};
  }

  std::string key_of(const FunctionDecl* fd) {
    if (const FunctionDecl* pattern = fd->getTemplateInstantiationPattern()) fd = pattern;
    std::string key = function_name(fd) + " " + fd->getType().getAsString();
    // Internal functions of different files may share a name.
    if (!fd->isExternallyVisible())
      key = path_of(sm_.getFileID(sm_.getFileLoc(fd->getLocation()))) + "#" + key;
    return key;
  }

  void report(Rule rule, SourceLocation loc, std::string message, const FunctionDecl* fd) {
    const auto index = static_cast<std::size_t>(rule);
    if (config_.disabled[index]) return;
    loc = sm_.getFileLoc(loc);
    if (suppressed(loc, rule_info(rule).id)) return;
    Finding f;
    f.rule = rule;
    f.severity = config_.severity[index].value_or(rule_info(rule).severity);
    f.where = location(loc);
    f.message = std::move(message);
    f.function = function_name(fd);
    f.function_key = key_of(fd);
    out_.findings.push_back(std::move(f));
  }

  ASTContext& ast() { return ast_; }
  SourceManager& sm() { return sm_; }
  TuResult& out() { return out_; }

 private:
  void walk_context(const DeclContext* dc) {
    for (const Decl* d : dc->decls()) {
      if (d->isImplicit()) continue;
      if (isa<NamespaceDecl>(d) || isa<LinkageSpecDecl>(d) || isa<ExportDecl>(d)) {
        if (sm_.isInSystemHeader(sm_.getFileLoc(d->getLocation()))) continue;
        walk_context(cast<DeclContext>(d));
      } else if (const auto* spec = dyn_cast<ClassTemplateSpecializationDecl>(d)) {
        if (spec->isExplicitSpecialization() && spec->isThisDeclarationADefinition() &&
            wanted(spec->getLocation())) {
          walk_context(spec);
        }
      } else if (const auto* rd = dyn_cast<CXXRecordDecl>(d)) {
        if (rd->isThisDeclarationADefinition() && !rd->isLambda() && wanted(rd->getLocation())) {
          walk_context(rd);
        }
      } else if (const auto* ctd = dyn_cast<ClassTemplateDecl>(d)) {
        const CXXRecordDecl* rd2 = ctd->getTemplatedDecl();
        if (rd2->isThisDeclarationADefinition() && wanted(rd2->getLocation())) walk_context(rd2);
      } else if (const auto* ftd = dyn_cast<FunctionTemplateDecl>(d)) {
        function(ftd->getTemplatedDecl());
      } else if (const auto* fd = dyn_cast<FunctionDecl>(d)) {
        function(fd);
      } else if (const auto* friend_decl = dyn_cast<FriendDecl>(d)) {
        if (const NamedDecl* nd = friend_decl->getFriendDecl()) {
          if (const auto* ffd = dyn_cast<FunctionDecl>(nd)) function(ffd);
        }
      }
    }
  }

  void function(const FunctionDecl* fd) {
    if (!fd->doesThisDeclarationHaveABody() || fd->isDefaulted() || fd->isDeleted()) return;
    if (fd->isTemplateInstantiation() || !wanted(fd->getLocation())) return;
    FunctionWalker(*this, fd).run();
  }

  std::string path_of(FileID fid) {
    if (auto it = paths_.find(fid); it != paths_.end()) return it->second;
    std::string path;
    if (const FileEntry* entry = sm_.getFileEntryForID(fid)) {
      path = entry->tryGetRealPathName().str();
      if (path.empty()) {
        llvm::SmallString<256> abs(entry->getName());
        llvm::sys::fs::make_absolute(abs);
        llvm::sys::path::remove_dots(abs, true);
        path = std::string(abs);
      }
    }
    paths_.emplace(fid, path);
    return path;
  }

  // `// ctxpp-audit: ignore CTX004` (or a comma-separated list, or "all") on the line
  // of the finding or on the line above.
  bool suppressed(SourceLocation loc, std::string_view id) {
    const FileID fid = sm_.getFileID(loc);
    bool invalid = false;
    const llvm::StringRef text = sm_.getBufferData(fid, &invalid);
    if (invalid) return false;
    const unsigned line = sm_.getSpellingLineNumber(loc);
    auto line_text = [&](unsigned n) -> llvm::StringRef {
      if (n == 0) return {};
      const unsigned offset = sm_.getFileOffset(sm_.translateLineCol(fid, n, 1));
      if (offset >= text.size()) return {};
      const llvm::StringRef rest = text.substr(offset);
      return rest.substr(0, rest.find('\n'));
    };
    for (const unsigned n : {line, line - 1}) {
      const llvm::StringRef l = line_text(n);
      const std::size_t at = l.find("ctxpp-audit: ignore");
      if (at == llvm::StringRef::npos) continue;
      const llvm::StringRef ids = l.substr(at + std::strlen("ctxpp-audit: ignore"));
      std::size_t pos = 0;
      while (pos < ids.size() && (ids[pos] == ' ' || ids[pos] == ',' || ids[pos] == '\t')) ++pos;
      // Only the id list right after "ignore" counts, so a reason may mention others.
      llvm::StringRef list = ids.substr(pos);
      list = list.take_while([](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == ',' || c == ' ';
      });
      llvm::SmallVector<llvm::StringRef, 4> parts;
      list.split(parts, ',', -1, false);
      for (llvm::StringRef p : parts) {
        p = p.trim();
        if (p == llvm::StringRef(id.data(), id.size()) || p == "all") return true;
      }
    }
    return false;
  }

  ASTContext& ast_;
  SourceManager& sm_;
  const Config& config_;
  const FileFilter& filter_;
  TuResult& out_;
  std::unordered_map<const Type*, bool> context_types_;
  std::map<FileID, bool> wanted_files_;
  std::map<FileID, std::string> paths_;
};

// ------------------------------------------------------------------------------------

bool FunctionWalker::is_context_expr(const Expr* e) const {
  if (e->isTypeDependent()) return false;
  return a_.is_context_type(e->getType()) || a_.is_stop_token(e->getType());
}

std::size_t FunctionWalker::consumer(std::size_t from, const Stmt* node, const Stmt*& below) const {
  below = node;
  std::size_t i = from;
  while (i > 0) {
    const Stmt* parent = stack_[i - 1];
    if (!transparent(parent)) return i - 1;
    below = parent;
    --i;
  }
  return static_cast<std::size_t>(-1);
}

const VarDecl* FunctionWalker::var_initialised_by(std::size_t index, const Stmt* child) const {
  const auto* ds = dyn_cast<DeclStmt>(stack_[index]);
  if (ds == nullptr) return nullptr;
  for (const Decl* d : ds->decls()) {
    if (const auto* vd = dyn_cast<VarDecl>(d); vd != nullptr && vd->getInit() == child) return vd;
  }
  return nullptr;
}

Ref FunctionWalker::classify(const Expr* subject) const {
  Ref r;
  const Stmt* below = nullptr;
  std::size_t at = consumer(stack_.size(), subject, below);
  if (at == static_cast<std::size_t>(-1)) return r;
  const Stmt* parent = stack_[at];
  if (const auto* member = dyn_cast<MemberExpr>(parent)) {
    r.member = member->getMemberDecl()->getNameAsString();
    if (at > 0 && isa<CXXMemberCallExpr>(stack_[at - 1])) {
      r.member_call = true;
      return r;
    }
    // What happens to x.member.
    at = consumer(at, parent, below);
    if (at == static_cast<std::size_t>(-1)) return r;
    parent = stack_[at];
  } else if (const auto* dependent = dyn_cast<CXXDependentScopeMemberExpr>(parent)) {
    r.member = dependent->getMember().getAsString();
    r.member_call = true;
    return r;
  }
  if (is_void_cast(parent)) {
    r.discarded = true;
  } else if (const VarDecl* vd = var_initialised_by(at, below)) {
    r.init_of = vd;
  } else if (isa<CallExpr>(parent) || isa<CXXConstructExpr>(parent)) {
    const std::string name = callee_name(cast<Expr>(parent));
    r.ctxpp_pass = in_ctxpp(name) && !matches_any(name, kDerive);
  }
  return r;
}

void FunctionWalker::run() {
  Frame top;
  for (const ParmVarDecl* p : fd_->parameters()) {
    if (a_.is_context_type(p->getType())) {
      top.has_context = true;
      ctx_params_.push_back({p, fd_->getLocation(), true, is_empty_body(fd_->getBody())});
    }
  }
  if (const auto* method = dyn_cast<CXXMethodDecl>(fd_)) {
    for (const FieldDecl* field : method->getParent()->fields()) {
      if (a_.is_context_type(field->getType())) class_has_context_ = true;
    }
  }
  frames_.push_back(top);
  if (const auto* ctor = dyn_cast<CXXConstructorDecl>(fd_)) {
    in_ctor_init_ = true;
    for (const CXXCtorInitializer* init : ctor->inits()) {
      if (init->isWritten()) walk(init->getInit());
    }
    in_ctor_init_ = false;
  }
  const Stmt* body = fd_->getBody();
  if (const auto* coro = dyn_cast_or_null<CoroutineBodyStmt>(body)) body = coro->getBody();
  walk(body);
  finish();
}

void FunctionWalker::touch_loops() {
  for (std::size_t index : loops_) loops_pending_[index].touched = true;
}

void FunctionWalker::walk(const Stmt* s) {
  if (s == nullptr) return;
  if (const auto* lambda = dyn_cast<LambdaExpr>(s)) {
    visit_lambda(lambda);
    return;
  }
  if (const auto* coro = dyn_cast<CoroutineBodyStmt>(s)) {
    walk(coro->getBody());
    return;
  }

  bool is_loop = false;
  if (isa<WhileStmt, ForStmt, DoStmt, CXXForRangeStmt>(s)) {
    PendingLoop loop;
    loop.loc = s->getBeginLoc();
    loop.frame_depth = frames_.size();
    loop.has_context = frames_.back().has_context;
    const Expr* cond = nullptr;
    bool no_cond = false;
    if (const auto* w = dyn_cast<WhileStmt>(s)) cond = w->getCond();
    if (const auto* d = dyn_cast<DoStmt>(s)) cond = d->getCond();
    if (const auto* f = dyn_cast<ForStmt>(s)) {
      cond = f->getCond();
      no_cond = cond == nullptr;
    }
    bool value = false;
    if (no_cond) {
      loop.unbounded = true;
    } else if (cond != nullptr && !cond->isValueDependent() &&
               cond->EvaluateAsBooleanCondition(value, a_.ast()) && value) {
      loop.unbounded = true;
    }
    loops_.push_back(loops_pending_.size());
    loops_pending_.push_back(loop);
    is_loop = true;
  }

  if (const auto* ref = dyn_cast<DeclRefExpr>(s)) visit_decl_ref(ref);
  if (const auto* e = dyn_cast<Expr>(s)) {
    if ((isa<DeclRefExpr>(e) || isa<MemberExpr>(e) || isa<CallExpr>(e)) && is_context_expr(e)) {
      touch_loops();
    }
  }

  bool wrapper = false;
  bool guard = false;
  bool thread_start = false;
  if (isa<CallExpr>(s) || isa<CXXConstructExpr>(s)) {
    const auto* e = cast<Expr>(s);
    const std::string name = callee_name(e);
    if (!name.empty()) {
      visit_call(e, name);
      wrapper = a_.is_wrapper_name(name);
      guard = matches_any(name, kGuards);
      thread_start = matches_any(name, kThreadStarts);
    }
  }
  if (const auto* op = dyn_cast<CXXOperatorCallExpr>(s);
      op != nullptr && op->getOperator() == OO_Equal && op->getNumArgs() == 2) {
    if (const auto* member = dyn_cast<MemberExpr>(op->getArg(0)->IgnoreParenImpCasts())) {
      if (isa<CXXThisExpr>(member->getBase()->IgnoreParenImpCasts()) &&
          a_.is_context_type(member->getType())) {
        sets_context_member_ = true;
      }
    }
  }
  if (const auto* new_expr = dyn_cast<CXXNewExpr>(s)) {
    visit_resource(new_expr, "memory", "new", -1);
  }
  if (const auto* construct = dyn_cast<CXXConstructExpr>(s)) {
    if (const auto* rd = construct->getType()->getAsCXXRecordDecl()) {
      const std::string name = record_name(rd);
      if (name == "std::thread" || name == "std::jthread") {
        if (!construct->getConstructor()->isCopyOrMoveConstructor() &&
            construct->getNumArgs() > 0) {
          visit_resource(construct, "thread", name, -1);
        }
      }
    }
  }

  if (wrapper) ++wrapped_;
  if (guard) ++guard_depth_;
  if (thread_start) ++thread_start_;
  stack_.push_back(s);
  for (const Stmt* child : s->children()) walk(child);
  stack_.pop_back();
  if (thread_start) --thread_start_;
  if (guard) --guard_depth_;
  if (wrapper) --wrapped_;

  if (is_loop) loops_.pop_back();
}

void FunctionWalker::visit_lambda(const LambdaExpr* lambda) {
  // Captures are references made by the enclosing function.
  stack_.push_back(lambda);
  for (const Expr* init : lambda->capture_inits()) walk(init);
  stack_.pop_back();

  Frame frame;
  frame.lambda = lambda;
  // A thread body blocks its own thread, not this function; it has a context only if
  // it captures one.
  frame.has_context = frames_.back().has_context && thread_start_ == 0;
  for (const LambdaCapture& capture : lambda->captures()) {
    if (capture.capturesVariable() && a_.is_context_type(capture.getCapturedVar()->getType())) {
      frame.has_context = true;
    }
  }
  frame.depth = frames_.size();
  const Stmt* below = nullptr;
  const std::size_t at = consumer(stack_.size(), lambda, below);
  if (at != static_cast<std::size_t>(-1)) frame.lambda_var = var_initialised_by(at, below);
  if (const CXXMethodDecl* op = lambda->getCallOperator()) {
    for (const ParmVarDecl* p : op->parameters()) {
      if (a_.is_context_type(p->getType())) {
        frame.has_context = true;
        ctx_params_.push_back({p, lambda->getBeginLoc(), false, is_empty_body(lambda->getBody())});
      }
    }
  }
  frames_.push_back(frame);
  stack_.push_back(lambda);
  const int thread_start = thread_start_;
  thread_start_ = 0;
  walk(lambda->getBody());
  thread_start_ = thread_start;
  stack_.pop_back();
  frames_.pop_back();
}

void FunctionWalker::visit_decl_ref(const DeclRefExpr* ref) {
  const ValueDecl* decl = ref->getDecl();
  if (decl == nullptr) return;
  Ref r = classify(ref);
  if (guard_depth_ > 0) {
    if (const auto* vd = dyn_cast<VarDecl>(decl)) guarded_vars_.insert(vd);
  }
  if (wrapped_ > 0) {
    if (const auto* vd = dyn_cast<VarDecl>(decl)) wrapped_vars_.insert(vd);
  }
  // A raw handle handed to an owning object (unique_ptr, a Connection...).
  if (const auto* vd = dyn_cast<VarDecl>(decl)) {
    const Stmt* below = nullptr;
    const std::size_t at = consumer(stack_.size(), ref, below);
    if (at != static_cast<std::size_t>(-1)) {
      const Stmt* parent = stack_[at];
      if (const auto* construct = dyn_cast<CXXConstructExpr>(parent)) {
        if (has_destructor(construct->getType())) owned_vars_.insert(vd);
      } else if (const auto* call = dyn_cast<CXXMemberCallExpr>(parent)) {
        const auto* method = call->getMethodDecl();
        if (method != nullptr && method->getName() == "reset" &&
            has_destructor(call->getImplicitObjectArgument()->getType())) {
          owned_vars_.insert(vd);
        }
      }
    }
  }
  refs_[decl].push_back(std::move(r));
}

bool FunctionWalker::blocking_here(const Expr* call, const std::string& name) const {
  for (const auto& t : kTimeoutCalls) {
    if (!name_matches(name, t.name)) continue;
    const auto* c = dyn_cast<CallExpr>(call);
    if (c == nullptr || c->getNumArgs() <= t.arg) return false;
    const Expr* arg = c->getArg(t.arg)->IgnoreParenImpCasts();
    if (arg->isValueDependent()) return false;
    if (t.null_means_infinite) {
      return arg->isNullPointerConstant(a_.ast(), Expr::NPC_ValueDependentIsNotNull) !=
             Expr::NPCK_NotNull;
    }
    Expr::EvalResult result;
    return arg->EvaluateAsInt(result, a_.ast()) && result.Val.getInt().isNegative();
  }
  if (!a_.is_blocking_name(name)) return false;
  // condition_variable_any::wait(lock, stop_token, pred) is cancellable.
  if (const auto* c = dyn_cast<CallExpr>(call)) {
    for (const Expr* arg : c->arguments()) {
      if (a_.is_stop_token(arg->getType())) return false;
    }
  }
  return true;
}

void FunctionWalker::visit_call(const Expr* call, const std::string& name) {
  const Frame& frame = frames_.back();
  const std::size_t parent = stack_.size();  // the call is not on the stack yet

  // Call graph.
  if (const auto* fd = dyn_cast_or_null<FunctionDecl>(callee_decl(call))) {
    if (!a_.sm().isInSystemHeader(a_.sm().getFileLoc(fd->getLocation()))) {
      a_.out().call_edges.emplace(a_.key_of(fd_), a_.key_of(fd));
    }
  }

  if (matches_any(name, kCallbacks)) interruptible_ = true;

  // CTX002 and the fresh roots of CTX005.
  if (name == "ctxpp::background" || name == "ctxpp::todo") {
    const bool by_member =
        class_has_context_ && !isa<CXXConstructorDecl>(fd_) && !isa<CXXDestructorDecl>(fd_);
    const std::string what = name.substr(7) + "()";
    if (!in_ctor_init_ && frame.has_context) {
      a_.report(Rule::broken_chain, call->getBeginLoc(), broken_chain_message(what), fd_);
    } else if (!in_ctor_init_ && by_member) {
      member_roots_.emplace_back(call->getBeginLoc(), what);
    }
    const Stmt* below = nullptr;
    const std::size_t at = consumer(parent, call, below);
    if (at != static_cast<std::size_t>(-1) && frames_.size() == 1) {
      const Stmt* p = stack_[at];
      if (isa<CallExpr>(p) || isa<CXXConstructExpr>(p)) {
        const std::string target = callee_name(cast<Expr>(p));
        if (!target.empty() && !in_ctxpp(target)) fresh_roots_.push_back(call->getBeginLoc());
      }
    }
  }

  // CTX003: what becomes of a with_* result.
  const bool returns_with_cancel = [&] {
    if (matches_any(name, kWithCancel)) return true;
    const auto* rd = call->getType().isNull() ? nullptr : call->getType()->getAsCXXRecordDecl();
    // A new result (a prvalue from a function), not v[i] or a getter's reference.
    return rd != nullptr && record_name(rd) == "ctxpp::WithCancel" && call->isPRValue() &&
           !isa<CXXConstructExpr>(call) && !isa<CXXOperatorCallExpr>(call);
  }();
  if (returns_with_cancel) {
    PendingWith w;
    w.loc = call->getBeginLoc();
    w.name = name;
    const Stmt* below = nullptr;
    std::size_t at = consumer(parent, call, below);
    if (at == static_cast<std::size_t>(-1)) {
      w.use = in_ctor_init_ ? WithUse::kept : WithUse::discarded;
    } else {
      const Stmt* p = stack_[at];
      if (const auto* member = dyn_cast<MemberExpr>(p)) {
        const std::string field = member->getMemberDecl()->getNameAsString();
        if (field == "ctx") {
          w.use = WithUse::ctx_only;
        } else {
          const Stmt* below2 = nullptr;
          const std::size_t at2 = consumer(at, member, below2);
          const VarDecl* vd =
              at2 == static_cast<std::size_t>(-1) ? nullptr : var_initialised_by(at2, below2);
          if (vd != nullptr) {
            w.use = WithUse::binding;
            w.decl = vd;
          }
        }
      } else if (is_void_cast(p) || isa<CompoundStmt>(p) || isa<IfStmt>(p) || isa<WhileStmt>(p) ||
                 isa<ForStmt>(p) || isa<DoStmt>(p) || isa<SwitchStmt>(p) || isa<CaseStmt>(p) ||
                 isa<DefaultStmt>(p) || isa<LabelStmt>(p)) {
        w.use = WithUse::discarded;
      } else if (const VarDecl* vd = var_initialised_by(at, below)) {
        if (const auto* dd = dyn_cast<DecompositionDecl>(vd)) {
          if (dd->bindings().size() == 2) {
            w.use = WithUse::binding;
            w.decl = dd->bindings()[1];
          }
        } else {
          w.use = WithUse::variable;
          w.decl = vd;
        }
      }
    }
    withs_.push_back(std::move(w));
  }

  // CTX004 / CTX005 / CTX006: blocking calls.
  if (blocking_here(call, name)) {
    PendingBlocking b;
    b.loc = call->getBeginLoc();
    b.name = name;
    b.has_context = frame.has_context;
    b.sleep = matches_any(name, kSleeps);
    b.wrapped = wrapped_ > 0;
    b.in_lambda = frames_.size() > 1;
    for (const Frame& f : frames_) {
      if (f.lambda_var != nullptr) b.lambda_vars.push_back(f.lambda_var);
    }
    const std::size_t index = blocking_.size();
    for (std::size_t loop : loops_) {
      if (loops_pending_[loop].frame_depth == frames_.size()) {
        loops_pending_[loop].blocking.push_back(index);
        b.loops.push_back(loop);
      }
    }
    blocking_.push_back(std::move(b));
  }

  // Resources.
  for (const auto& r : kResources) {
    if (name_matches(name, r.name)) {
      visit_resource(call, r.kind, r.name.starts_with("::") ? r.name.substr(2) : r.name, r.out_arg);
      break;
    }
  }
}

void FunctionWalker::visit_resource(const Expr* e, std::string_view kind, std::string_view call,
                                    int out_arg) {
  PendingResource r;
  r.entry.kind = std::string(kind);
  r.entry.call = std::string(call);
  r.entry.where = a_.location(e->getBeginLoc());
  r.entry.function = function_name(fd_);
  if (!a_.wanted(e->getBeginLoc())) return;

  if (out_arg >= 0) {
    const auto* c = dyn_cast<CallExpr>(e);
    if (c != nullptr && static_cast<unsigned>(out_arg) < c->getNumArgs()) {
      const Expr* arg = c->getArg(static_cast<unsigned>(out_arg))->IgnoreParenImpCasts();
      if (const auto* addr = dyn_cast<UnaryOperator>(arg); addr && addr->getOpcode() == UO_AddrOf) {
        arg = addr->getSubExpr()->IgnoreParenImpCasts();
      }
      if (const auto* ref = dyn_cast<DeclRefExpr>(arg)) {
        r.var = dyn_cast<VarDecl>(ref->getDecl());
        if (r.var != nullptr && has_destructor(r.var->getType())) r.entry.scope_bound = true;
      } else if (const auto* member = dyn_cast<MemberExpr>(arg)) {
        // Into a member: the owner's destructor releases it when it has one.
        r.entry.scope_bound = isa<CXXThisExpr>(member->getBase()->IgnoreParenImpCasts());
      }
    }
    resources_.push_back(std::move(r));
    return;
  }

  if (has_destructor(e->getType())) {
    r.entry.scope_bound = true;  // a Lease, a jthread...
    resources_.push_back(std::move(r));
    return;
  }
  const Stmt* below = nullptr;
  const std::size_t at = consumer(stack_.size(), e, below);
  if (at != static_cast<std::size_t>(-1)) {
    const Stmt* p = stack_[at];
    if (const auto* construct = dyn_cast<CXXConstructExpr>(p)) {
      r.entry.scope_bound = has_destructor(construct->getType());
    } else if (const auto* member_call = dyn_cast<CXXMemberCallExpr>(p)) {
      r.entry.scope_bound = has_destructor(member_call->getImplicitObjectArgument()->getType());
    } else if (const auto* init_list = dyn_cast<InitListExpr>(p)) {
      r.entry.scope_bound = has_destructor(init_list->getType());
    } else if (const VarDecl* vd = var_initialised_by(at, below)) {
      r.var = vd;
      r.entry.scope_bound = has_destructor(vd->getType());
    } else if (const auto* assign = dyn_cast<BinaryOperator>(p);
               assign != nullptr && assign->getOpcode() == BO_Assign) {
      const Expr* lhs = assign->getLHS()->IgnoreParenImpCasts();
      if (const auto* ref = dyn_cast<DeclRefExpr>(lhs)) r.var = dyn_cast<VarDecl>(ref->getDecl());
    } else if (const auto* op = dyn_cast<CXXOperatorCallExpr>(p)) {
      // owner = new T: an owning object's operator=.
      r.entry.scope_bound = op->getNumArgs() > 0 && has_destructor(op->getArg(0)->getType());
    }
  }
  resources_.push_back(std::move(r));
}

bool FunctionWalker::cancel_used(const ValueDecl* decl, int depth) const {
  auto it = refs_.find(decl);
  if (it == refs_.end()) return false;
  for (const Ref& r : it->second) {
    // (void)cancel says "not needed" on purpose: an explicit decision, not a slip.
    if (r.discarded) return true;
    if (r.init_of != nullptr && r.member.empty() && depth < 4) {
      if (cancel_used(r.init_of, depth + 1)) return true;
      continue;
    }
    return true;
  }
  return false;
}

bool FunctionWalker::with_var_cancel_used(const ValueDecl* decl) const {
  auto it = refs_.find(decl);
  if (it == refs_.end()) return false;
  for (const Ref& r : it->second) {
    if (r.member == "ctx") continue;
    if (r.discarded) return true;
    if (r.member == "cancel" && r.init_of != nullptr) {
      if (cancel_used(r.init_of, 1)) return true;
      continue;
    }
    return true;  // r.cancel used, or the whole result passed on
  }
  return false;
}

void FunctionWalker::finish() {
  const std::string fname = function_name(fd_);

  // CTX001 and the inventory.
  bool any_use = false;
  bool any_check = false;
  for (const ContextParam& p : ctx_params_) {
    bool used = false;
    if (auto it = refs_.find(p.param); it != refs_.end()) {
      for (const Ref& r : it->second) {
        if (r.discarded) continue;
        used = true;
        if ((r.member_call && r.member != "value") || r.ctxpp_pass) any_check = true;
      }
    }
    any_use = any_use || used;
    const bool deliberate =
        p.param->getName().empty() || p.param->hasAttr<UnusedAttr>() || p.empty_body;
    if (!used && !deliberate) {
      const std::string who = p.is_function ? "'" + fname + "'" : "this lambda";
      a_.report(Rule::unchecked_context, p.report_at,
                who + " takes context '" + p.param->getNameAsString() +
                    "' but never checks it, passes it on or captures it: its caller's "
                    "cancellation and deadline are ignored",
                fd_);
    }
  }
  // Checks made through derived or copied contexts count for the function.
  if (!any_check) {
    for (const auto& [decl, list] : refs_) {
      if (!a_.is_context_type(decl->getType())) continue;
      for (const Ref& r : list) {
        if ((r.member_call && r.member != "value") || r.ctxpp_pass) any_check = true;
      }
    }
  }
  const bool function_takes_context = std::any_of(
      ctx_params_.begin(), ctx_params_.end(), [](const ContextParam& p) { return p.is_function; });
  if (function_takes_context) {
    FunctionEntry entry;
    entry.key = a_.key_of(fd_);
    entry.name = fname;
    entry.where = a_.location(fd_->getLocation());
    entry.use = any_check ? ContextUse::checks
                : any_use ? ContextUse::passes_only
                          : ContextUse::ignores;
    a_.out().functions.push_back(std::move(entry));
  }

  // CTX003.
  for (const PendingWith& w : withs_) {
    const std::string what = "'" + w.name.substr(w.name.rfind(':') + 1) + "'";
    switch (w.use) {
      case WithUse::discarded:
        a_.report(Rule::lost_cancel, w.loc,
                  "the result of " + what +
                      " is discarded: the new context can never be cancelled and lingers until "
                      "its parent ends",
                  fd_);
        break;
      case WithUse::ctx_only:
        a_.report(Rule::lost_cancel, w.loc,
                  "only '.ctx' of " + what +
                      " is kept: its cancel function is dropped, so the context lingers until "
                      "its parent ends; keep the cancel and call it when done",
                  fd_);
        break;
      case WithUse::binding:
        if (!cancel_used(w.decl, 0)) {
          a_.report(Rule::lost_cancel, w.loc,
                    "the cancel function '" + w.decl->getNameAsString() + "' of " + what +
                        " is never called, stored, returned or passed on",
                    fd_);
        }
        break;
      case WithUse::variable:
        if (!with_var_cancel_used(w.decl)) {
          a_.report(Rule::lost_cancel, w.loc,
                    "'" + w.decl->getNameAsString() + ".cancel' of " + what +
                        " is never called, stored, returned or passed on",
                    fd_);
        }
        break;
      case WithUse::kept:
        break;
    }
  }

  // CTX004.
  auto still_blocking = [&](const PendingBlocking& b) {
    if (b.wrapped) return false;
    if (interruptible_ && !b.sleep) return false;
    // A sleep in a loop that checks the context each turn is a polling step.
    if (b.sleep && std::any_of(b.loops.begin(), b.loops.end(),
                               [&](std::size_t l) { return loops_pending_[l].touched; })) {
      return false;
    }
    return std::none_of(b.lambda_vars.begin(), b.lambda_vars.end(),
                        [&](const VarDecl* v) { return wrapped_vars_.count(v) != 0; });
  };
  std::vector<const PendingBlocking*> direct_blocking;
  for (const PendingBlocking& b : blocking_) {
    if (!still_blocking(b)) continue;
    if (b.has_context) {
      a_.report(Rule::blocking_call, b.loc,
                "'" + b.name +
                    "' blocks without seeing the context in scope: it keeps running after "
                    "cancellation; use a context-aware alternative or wrap it in "
                    "ctxpp::call_blocking",
                fd_);
    } else if (!b.in_lambda) {
      direct_blocking.push_back(&b);
    }
  }

  // CTX005.
  const bool has_any_context = frames_.front().has_context || class_has_context_;
  const auto* method = dyn_cast<CXXMethodDecl>(fd_);
  for (const auto& [loc, what] : member_roots_) {
    if (!sets_context_member_) a_.report(Rule::broken_chain, loc, broken_chain_message(what), fd_);
  }

  const bool visible = fd_->isExternallyVisible() && !fd_->isMain() &&
                       !isa<CXXDestructorDecl>(fd_) &&
                       (method == nullptr || method->getAccess() == AS_public);
  if (visible && !has_any_context && (!direct_blocking.empty() || !fresh_roots_.empty())) {
    std::string why;
    if (!direct_blocking.empty()) {
      why = "blocks in '" + direct_blocking.front()->name + "' (line " +
            std::to_string(a_.location(direct_blocking.front()->loc).line) + ")";
    } else {
      why = "calls a context-taking function with a fresh root (line " +
            std::to_string(a_.location(fresh_roots_.front()).line) + ")";
    }
    a_.report(Rule::missing_context, fd_->getLocation(),
              "'" + fname + "' " + why +
                  " but takes no context; add a 'const ctxpp::Context&' parameter and keep the "
                  "old signature as a wrapper passing ctxpp::todo() (docs/migration.md)",
              fd_);
  }

  // CTX006.
  for (const PendingLoop& loop : loops_pending_) {
    if (!loop.has_context || loop.touched) continue;
    const bool blocks = std::any_of(loop.blocking.begin(), loop.blocking.end(),
                                    [&](std::size_t i) { return still_blocking(blocking_[i]); });
    if (!loop.unbounded && !blocks) continue;
    a_.report(Rule::loop_without_check, loop.loc,
              std::string(loop.unbounded ? "unbounded loop" : "loop with blocking calls") +
                  " never checks or passes the context in scope: it goes on after "
                  "cancellation; test ctx.done() (or pass ctx) in the loop",
              fd_);
  }

  // Resources.
  for (PendingResource& r : resources_) {
    if (!r.entry.scope_bound && r.var != nullptr &&
        (guarded_vars_.count(r.var) != 0 || owned_vars_.count(r.var) != 0)) {
      r.entry.scope_bound = true;
    }
    a_.out().resources.push_back(std::move(r.entry));
  }

  a_.out().function_names.emplace(a_.key_of(fd_), fname);
  a_.out().function_locations.emplace(a_.key_of(fd_), a_.location(fd_->getLocation()));
}

}  // namespace

void analyze_translation_unit(clang::ASTContext& ast, const Config& config,
                              const FileFilter& filter, TuResult& out) {
  Analyzer(ast, config, filter, out).run();
  // The same header function is walked once per TU; co_await and macros may show one
  // call twice.
  auto key = [](const Finding& f) { return std::tie(f.where, f.rule); };
  std::sort(out.findings.begin(), out.findings.end(),
            [&](const Finding& a, const Finding& b) { return key(a) < key(b); });
  out.findings.erase(
      std::unique(out.findings.begin(), out.findings.end(),
                  [&](const Finding& a, const Finding& b) { return key(a) == key(b); }),
      out.findings.end());
}

}  // namespace ctxpp::audit
