//! Loading: every `*.cedar` file under the policies folder (subfolders included, hidden entries
//! skipped), parsed, given stable ids and validated in strict mode against the schema. The result is
//! a [`LoadedPolicies`], the only form of policies the engine evaluates: raw text never gets there.
//!
//! Ids are `<path relative to the folder>#<@id>`, e.g. `heart/fhir.cedar#physicians-read`. Cedar
//! does not apply `@id` by itself; the loader does, and refuses a policy without one, so an audit
//! record always names a policy a person can find.
//!
//! Cost (a reload of 1,000 policies has a 100 ms target): files are parsed and validated on every
//! core, and a hot reload ([`LoadedPolicies::rebuild`]) takes over every file whose text did not
//! change, so editing one file re-parses and re-validates that file only; slicing is redone whole.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    ActionConstraint, Effect, EntityUid, Policy, PolicyId, PolicySet, ResourceConstraint, Schema, Template,
    ValidationMode, ValidationWarning, Validator,
};

use super::entities::{ACTION, OWNER, PartyShape, RESOURCE, RESOURCE_TYPE};

/// How deep subfolders may nest (a guard against symlink loops).
const MAX_DEPTH: usize = 16;

/// One problem, located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read `{path}`: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the policies folder `{dir}` holds policies but the schema `{schema}` does not exist")]
    MissingSchema { dir: String, schema: String },
    #[error("{}", join_lines(.0))]
    Invalid(Vec<Located>),
    #[error(
        "the policies folder `{dir}` now holds no policy; keeping the previous set (restart to run without policies)"
    )]
    Emptied { dir: String },
}

fn join_lines(errors: &[Located]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// The text of one policy file.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// Relative to the policies folder, `/`-separated.
    pub rel: String,
    pub text: String,
}

/// What the folder and the schema hold right now, read but not yet parsed.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub dir_exists: bool,
    pub schema_text: Option<String>,
    pub sources: Vec<Source>,
}

impl Snapshot {
    pub fn read(dir: &Path, schema: &Path) -> Result<Snapshot, LoadError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| LoadError::Io { path, source }
        };
        let dir_exists = dir.is_dir();
        let mut sources = Vec::new();
        if dir_exists {
            collect(dir, dir, 0, &mut sources)?;
        }
        sources.sort_by(|a, b| a.rel.cmp(&b.rel));
        let schema_text = match std::fs::read_to_string(schema) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(schema)(e)),
        };
        Ok(Snapshot { dir_exists, schema_text, sources })
    }

    /// A digest of everything that goes into a policy set: a change in any file changes it.
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        self.dir_exists.hash(&mut h);
        self.schema_text.hash(&mut h);
        for s in &self.sources {
            s.rel.hash(&mut h);
            s.text.hash(&mut h);
        }
        h.finish()
    }
}

fn collect(root: &Path, dir: &Path, depth: usize, out: &mut Vec<Source>) -> Result<(), LoadError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| LoadError::Io { path, source }
    };
    if depth > MAX_DEPTH {
        return Err(LoadError::Io {
            path: dir.display().to_string(),
            source: std::io::Error::other(format!("folders nest deeper than {MAX_DEPTH} levels")),
        });
    }
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Hidden entries: editor swap files, `..data` folders of Kubernetes volumes, VCS folders.
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            collect(root, &path, depth + 1, out)?;
        } else if meta.is_file() && name.ends_with(".cedar") {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push(Source { rel, text });
        }
    }
    Ok(())
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 1;
    for (i, ch) in text.char_indices() {
        if i >= offset {
            break;
        }
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

/// Where each policy and template of a parsed file starts. Cedar names them `policy0`, `policy1`, …
/// in source order and keeps their source text, which is found again from there on.
fn source_offsets(parsed: &PolicySet, text: &str) -> HashMap<PolicyId, usize> {
    let mut items: Vec<(usize, PolicyId, String)> = parsed
        .policies()
        .filter_map(|p| p.to_cedar().map(|t| (source_number(p.id()), p.id().clone(), t)))
        .chain(parsed.templates().map(|t| (source_number(t.id()), t.id().clone(), t.to_cedar())))
        .collect();
    items.sort_by_key(|(n, _, _)| *n);
    let mut cursor = 0;
    let mut out = HashMap::new();
    for (_, id, body) in items {
        if let Some(found) = text.get(cursor..).and_then(|rest| rest.find(body.as_str())) {
            out.insert(id, cursor + found);
            cursor += found + body.len();
        }
    }
    out
}

/// The place of a policy in its file: Cedar numbers them `policy0`, `policy1`, … in source order.
fn source_number(id: &PolicyId) -> usize {
    id.to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(usize::MAX)
}

/// Locates a Cedar diagnostic (parse or validation error) in `text`, from its first label.
fn locate(file: &str, text: &str, diag: &dyn miette::Diagnostic) -> Located {
    let offset = diag.labels().and_then(|mut l| l.next()).map(|l| l.offset()).unwrap_or(0);
    let (line, column) = line_col(text, offset);
    let mut message = diag.to_string();
    if let Some(help) = diag.help() {
        message = format!("{message} ({help})");
    }
    Located { file: file.to_owned(), line, column, message }
}

/// A policy's annotation. `Policy::annotation` runs Cedar's parser on the key at every call (5% of
/// a load of 1,000 policies); comparing the keys the policy holds is the same lookup.
fn annotation<'a>(p: &'a Policy, key: &str) -> Option<&'a str> {
    p.annotations().find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// Which requests a policy can apply to, by its resource scope, so evaluation only looks at the
/// policies that could match (Cedar itself evaluates every policy in a set).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SliceKey {
    Any,
    Type(String),
    Owner(String),
    Resource(String),
}

fn slice_key(p: &Policy) -> SliceKey {
    let by_uid = |u: &EntityUid| {
        let id = u.id().unescaped().to_owned();
        match u.type_name().to_string().as_str() {
            RESOURCE_TYPE => SliceKey::Type(id),
            OWNER => SliceKey::Owner(id),
            RESOURCE => SliceKey::Resource(id),
            _ => SliceKey::Any,
        }
    };
    match p.resource_constraint() {
        // INVARIANT (slicing): resources are `in` exactly their owner and their type, and nothing is
        // `in` a resource, so `resource in X` / `resource == X` can only match resources keyed by X.
        ResourceConstraint::Eq(u) | ResourceConstraint::In(u) | ResourceConstraint::IsIn(_, u) => by_uid(&u),
        ResourceConstraint::Any | ResourceConstraint::Is(_) => SliceKey::Any,
    }
}

/// Policy sets indexed by resource scope and by scope (action), so a request evaluates only the
/// policies that could match it (Cedar itself evaluates every policy in a set). A request evaluates
/// `for_type` (or `any`) for its scope, plus the owner's and the resource's own sets when they
/// exist; the engine combines their answers with Cedar's rule (any satisfied `forbid` denies, else
/// any satisfied `permit` allows).
#[derive(Debug, Default)]
pub(crate) struct Slices {
    /// scope -> the policies with no resource scope.
    pub any: HashMap<String, PolicySet>,
    /// type -> scope -> `any` plus the policies scoped to that type, for the scopes some of those
    /// admit.
    pub for_type: HashMap<String, HashMap<String, PolicySet>>,
    pub for_owner: HashMap<String, HashMap<String, PolicySet>>,
    pub for_resource: HashMap<String, HashMap<String, PolicySet>>,
}

impl Slices {
    pub fn sets_for(
        &self,
        resource_type: Option<&str>,
        owner: &str,
        resource_id: &str,
        scope: &str,
    ) -> Vec<&PolicySet> {
        // A type has a set only for the scopes its own policies admit; for the others, `any` is
        // what that set would hold.
        let base = resource_type
            .and_then(|t| self.for_type.get(t))
            .and_then(|by_scope| by_scope.get(scope))
            .or_else(|| self.any.get(scope));
        let mut sets: Vec<&PolicySet> = base.into_iter().collect();
        sets.extend(self.for_owner.get(owner).and_then(|m| m.get(scope)));
        sets.extend(self.for_resource.get(resource_id).and_then(|m| m.get(scope)));
        sets
    }
}

/// For each declared scope, the action ids an action constraint may name to admit it: the scope and
/// every action group it is in.
pub(crate) type ActionGroups = HashMap<String, HashSet<String>>;

/// Whether a policy's action constraint admits `scope`.
// INVARIANT (scope-slicing): this must never say no to a scope the policy applies to, or slicing
// would leave out a policy (a forbid!) that applies; so groups are expanded, and anything not
// understood admits every scope.
pub(crate) fn admits(p: &Policy, scope: &str, groups: &ActionGroups) -> bool {
    let named = |a: &EntityUid| {
        a.type_name().to_string() != ACTION || groups.get(scope).is_none_or(|g| g.contains(a.id().unescaped()))
    };
    match p.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => named(&a),
        ActionConstraint::In(list) => list.iter().any(named),
    }
}

/// One policy file, parsed, named and validated: what a reload takes over as it is when neither the
/// file nor the schema changed, so that editing one file re-parses and re-validates that file only.
#[derive(Debug)]
pub(crate) struct FileUnit {
    rel: String,
    text: String,
    /// Named `<rel>#<@id>`, in source order.
    policies: Vec<Policy>,
    /// The party attributes each policy reads, in the same order (see `required_claims`).
    reads: Vec<BTreeSet<String>>,
    /// Validator warnings that are only logged, located.
    warnings: Vec<String>,
    /// Only tests load without validating; such a unit is never taken over by a validating load.
    validated: bool,
}

/// Validated policies: the engine's only input. Built by [`LoadedPolicies::build`].
#[derive(Debug)]
pub(crate) struct LoadedPolicies {
    pub schema: Option<Schema>,
    pub shape: PartyShape,
    /// Scopes the schema declares.
    pub actions: HashSet<String>,
    /// The schema's action entities that are in a group, built once: what a request's entities
    /// need for `action in <group>`. An action absent from them has no ancestors, as an ungrouped
    /// one has anyway, and each entity fewer makes every request's transitive closure cheaper.
    pub action_entities: Vec<cedar_policy::Entity>,
    pub action_groups: ActionGroups,
    pub slices: Slices,
    /// What each permit could need from the party (see `required_claims::may_need_claims`).
    pub permit_needs: HashMap<PolicyId, super::required_claims::PermitNeeds>,
    /// Every party attribute some `forbid` reads: a PCT must keep these, or leaving one out could
    /// silently disarm the forbid on a later request.
    pub forbid_attrs: BTreeSet<String>,
    /// Ids of permits annotated `@approval("owner")`.
    pub approval: HashSet<PolicyId>,
    /// One share template per declared scope.
    pub share_templates: HashMap<String, Template>,
    pub files: usize,
    pub fingerprint: u64,
    pub warnings: Vec<String>,
    /// Every file's policies, by path (as the snapshot orders them), for the next reload to reuse.
    units: Vec<Arc<FileUnit>>,
    policies: usize,
    /// What the units were read against: a reload reuses them only for the same folder and schema.
    dir: PathBuf,
    schema_text: Option<String>,
}

/// Sets at least this large are freed on a thread of their own (see `Drop`).
const FREE_APART_FROM: usize = 200;

impl Drop for LoadedPolicies {
    /// The last holder of a replaced set is a reload (inside the engine's write lock) or a request
    /// that was still using it; freeing a thousand policies and their slices takes milliseconds
    /// that neither should wait for.
    fn drop(&mut self) {
        if self.policies < FREE_APART_FROM {
            return;
        }
        let heavy =
            (std::mem::take(&mut self.slices), std::mem::take(&mut self.units), std::mem::take(&mut self.permit_needs));
        // If no thread can be started, the closure (and `heavy` with it) is dropped here instead.
        let _ = std::thread::Builder::new().name("policy-free".into()).spawn(move || drop(heavy));
    }
}

impl LoadedPolicies {
    /// No policies: every request is denied.
    pub fn empty(fingerprint: u64) -> Self {
        LoadedPolicies {
            schema: None,
            shape: PartyShape::default(),
            actions: HashSet::new(),
            action_entities: Vec::new(),
            action_groups: HashMap::new(),
            permit_needs: HashMap::new(),
            forbid_attrs: BTreeSet::new(),
            slices: Slices::default(),
            approval: HashSet::new(),
            share_templates: HashMap::new(),
            files: 0,
            fingerprint,
            warnings: Vec::new(),
            units: Vec::new(),
            policies: 0,
            dir: PathBuf::new(),
            schema_text: None,
        }
    }

    pub fn count(&self) -> usize {
        self.policies
    }

    /// Parses, names and validates a snapshot. `dir` and `schema` are only used in messages.
    pub fn build(snap: &Snapshot, dir: &Path, schema_path: &Path) -> Result<Self, LoadError> {
        Self::build_inner(snap, dir, schema_path, true, None)
    }

    /// The same as [`LoadedPolicies::build`], taking over from `previous` every file whose text is
    /// unchanged (when the folder and the schema are too): a hot reload that changes one file
    /// parses, validates and derives that file only. The result is the one `build` would give.
    pub fn rebuild(
        previous: &LoadedPolicies,
        snap: &Snapshot,
        dir: &Path,
        schema_path: &Path,
    ) -> Result<Self, LoadError> {
        Self::build_inner(snap, dir, schema_path, true, Some(previous))
    }

    /// Without strict validation: only for tests of what the evaluator does with policies that
    /// fail at run time.
    #[cfg(test)]
    pub fn build_unvalidated(snap: &Snapshot, dir: &Path, schema_path: &Path) -> Result<Self, LoadError> {
        Self::build_inner(snap, dir, schema_path, false, None)
    }

    fn build_inner(
        snap: &Snapshot,
        dir: &Path,
        schema_path: &Path,
        validate: bool,
        previous: Option<&LoadedPolicies>,
    ) -> Result<Self, LoadError> {
        let fingerprint = snap.fingerprint();
        let shown = |rel: &str| dir.join(rel).display().to_string();
        let schema_shown = schema_path.display().to_string();
        let Some(schema_text) = &snap.schema_text else {
            if snap.sources.is_empty() {
                return Ok(Self::empty(fingerprint));
            }
            return Err(LoadError::MissingSchema { dir: dir.display().to_string(), schema: schema_shown });
        };
        let (schema, schema_warnings) = Schema::from_cedarschema_str(schema_text)
            .map_err(|e| LoadError::Invalid(vec![locate(&schema_shown, schema_text, &e)]))?;
        let mut warnings: Vec<String> = schema_warnings.map(|w| format!("{schema_shown}: {w}")).collect();
        let shape = PartyShape::from_schema_text(schema_text).map_err(|message| {
            LoadError::Invalid(vec![Located { file: schema_shown.clone(), line: 1, column: 1, message }])
        })?;
        // Scopes are the actions that apply to requests; an action that only groups others is not one.
        let actions: HashSet<String> = schema
            .actions()
            .filter(|a| a.type_name().to_string() == ACTION)
            .filter(|a| schema.principals_for_action(a).is_some_and(|mut p| p.next().is_some()))
            .map(|a| a.id().unescaped().to_owned())
            .collect();

        let action_entities = super::entities::probe(&schema, &shape, &actions).map_err(|message| {
            LoadError::Invalid(vec![Located { file: schema_shown.clone(), line: 1, column: 1, message }])
        })?;
        // The schema's action hierarchy (transitively closed), for the groups of each scope.
        let hierarchy = cedar_policy::Entities::from_entities(action_entities.iter().cloned(), None).ok();
        let action_groups = action_groups(hierarchy.as_ref(), &actions);
        let action_entities = in_a_group(action_entities, hierarchy.as_ref());

        // Files the previous set already holds, read from the same folder against the same schema.
        let reusable = |src: &Source| {
            let prev = previous.filter(|p| p.dir == dir && p.schema_text.as_ref() == Some(schema_text))?;
            let i = prev.units.binary_search_by(|u| u.rel.as_str().cmp(&src.rel)).ok()?;
            prev.units.get(i).filter(|u| u.text == src.text && u.validated == validate).cloned()
        };
        let reused: Vec<Option<Arc<FileUnit>>> = snap.sources.iter().map(reusable).collect();
        let fresh: Vec<&Source> =
            snap.sources.iter().zip(&reused).filter(|(_, r)| r.is_none()).map(|(src, _)| src).collect();

        // Every file is parsed and named before any is validated, so that what is reported is the
        // syntax errors of every file, or else the validation errors of every file.
        let named = par_map(fresh.clone(), |src| {
            let mut errors = Vec::new();
            let policies = parse_file(src, &shown(&src.rel), &mut errors);
            (policies, errors)
        });
        let mut errors: Vec<Located> = named.iter().flat_map(|(_, e)| e.iter().cloned()).collect();
        if !errors.is_empty() {
            return Err(LoadError::Invalid(errors));
        }
        // Validated file by file (Cedar validates each policy on its own), so that a unit is what
        // the next reload can take over.
        let validator = validate.then(|| Validator::new(schema.clone()));
        let work: Vec<(&Source, Vec<Policy>)> = fresh.into_iter().zip(named.into_iter().map(|(p, _)| p)).collect();
        let mut checked =
            par_map(work, |(src, policies)| check_file(src, &shown(&src.rel), policies, validator.as_ref()))
                .into_iter();
        let mut units = Vec::with_capacity(reused.len());
        for r in reused {
            match r {
                Some(unit) => units.push(unit),
                None => {
                    if let Some((unit, file_errors)) = checked.next() {
                        errors.extend(file_errors);
                        units.push(Arc::new(unit));
                    }
                }
            }
        }
        warnings.extend(units.iter().flat_map(|u| u.warnings.iter().cloned()));

        let share_templates = super::sharing::templates(&actions).map_err(|message| {
            LoadError::Invalid(vec![Located { file: schema_shown.clone(), line: 1, column: 1, message }])
        })?;
        let mut tset = PolicySet::new();
        for t in share_templates.values() {
            if let Err(e) = tset.add_template(t.clone()) {
                errors.push(Located { file: schema_shown.clone(), line: 1, column: 1, message: e.to_string() });
            }
        }
        let tresult = Validator::new(schema.clone()).validate(&tset, ValidationMode::Strict);
        for e in tresult.validation_errors() {
            errors.push(Located {
                file: schema_shown.clone(),
                line: 1,
                column: 1,
                message: format!("the schema does not support resource-owner shares: {e}"),
            });
        }
        if !errors.is_empty() {
            return Err(LoadError::Invalid(errors));
        }

        let all = || units.iter().flat_map(|u| u.policies.iter().zip(&u.reads));
        let mut permit_needs = HashMap::new();
        let mut forbid_attrs = BTreeSet::new();
        let mut approval = HashSet::new();
        for (p, reads) in all() {
            match p.effect() {
                Effect::Permit => {
                    permit_needs.insert(p.id().clone(), super::required_claims::PermitNeeds { attrs: reads.clone() });
                }
                Effect::Forbid => forbid_attrs.extend(reads.iter().cloned()),
            }
            if annotation(p, "approval") == Some("owner") {
                approval.insert(p.id().clone());
            }
        }
        let slices = slice(all().map(|(p, _)| p), &action_groups).map_err(|message| {
            LoadError::Invalid(vec![Located { file: dir.display().to_string(), line: 1, column: 1, message }])
        })?;
        Ok(LoadedPolicies {
            schema: Some(schema),
            shape,
            actions,
            action_entities,
            action_groups,
            permit_needs,
            forbid_attrs,
            slices,
            approval,
            share_templates,
            files: snap.sources.len(),
            fingerprint,
            warnings,
            policies: units.iter().map(|u| u.policies.len()).sum(),
            units,
            dir: dir.to_owned(),
            schema_text: Some(schema_text.clone()),
        })
    }
}

/// Validates one file's policies (if `validator`) and reads what each needs from the party.
fn check_file(
    src: &Source,
    file: &str,
    policies: Vec<Policy>,
    validator: Option<&Validator>,
) -> (FileUnit, Vec<Located>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if let Some(validator) = validator {
        match PolicySet::from_policies(policies.iter().cloned()) {
            Ok(set) => {
                let result = validator.validate(&set, ValidationMode::Strict);
                errors.extend(result.validation_errors().map(|e| locate(file, &src.text, e)));
                for w in result.validation_warnings() {
                    let at = locate(file, &src.text, w);
                    // A policy that can never apply is almost always a typo (a misspelt claim behind
                    // `has` makes the condition false), and a dead `forbid` fails open; bidirectional
                    // control characters can make the text say something else than it does.
                    if matches!(
                        w,
                        ValidationWarning::ImpossiblePolicy(_)
                            | ValidationWarning::InvalidActionApplication(_)
                            | ValidationWarning::BidiCharsInString(_)
                            | ValidationWarning::BidiCharsInIdentifier(_)
                    ) {
                        errors.push(at);
                    } else {
                        warnings.push(format!("warning: {at}"));
                    }
                }
            }
            Err(e) => errors.push(Located { file: file.to_owned(), line: 1, column: 1, message: e.to_string() }),
        }
    }
    let unit = FileUnit {
        rel: src.rel.clone(),
        text: src.text.clone(),
        reads: policies.iter().map(|p| super::required_claims::PermitNeeds::of(p).attrs).collect(),
        policies,
        warnings,
        validated: validator.is_some(),
    };
    (unit, errors)
}

/// `f` over `items` on as many threads as there are cores, the results in the order of `items`. A
/// load is mostly Cedar parsing and validating files, each on its own, and a reload has a latency
/// target; the calling thread works too, so a thread that cannot be started only slows it down.
fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len());
    if threads <= 1 {
        return items.into_iter().map(f).collect();
    }
    let queue = Mutex::new(items.into_iter().enumerate());
    let work = || {
        let mut out = Vec::new();
        loop {
            // Taken alone so that the lock is released before the work.
            let next = match queue.lock() {
                Ok(mut q) => q.next(),
                Err(poisoned) => poisoned.into_inner().next(),
            };
            let Some((i, item)) = next else { break };
            out.push((i, f(item)));
        }
        out
    };
    let mut done = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| std::thread::Builder::new().name("policy-load".into()).spawn_scoped(s, work).ok())
            .collect();
        let mut done = work();
        for h in helpers {
            // A panic in a helper is one in this load, as if it had run here.
            done.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        done
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Parses one file and names its policies `<rel>#<@id>`, in source order; what is wrong goes to
/// `errors`, located.
fn parse_file(src: &Source, file: &str, errors: &mut Vec<Located>) -> Vec<Policy> {
    let parsed = match PolicySet::from_str(&src.text) {
        Ok(p) => p,
        Err(errs) => {
            errors.extend(errs.iter().map(|e| locate(file, &src.text, e)));
            return Vec::new();
        }
    };
    // Positions only serve to report a problem: found when there is one.
    let offsets = std::cell::OnceCell::new();
    let pos = |id: &PolicyId| {
        offsets
            .get_or_init(|| source_offsets(&parsed, &src.text))
            .get(id)
            .map(|o| line_col(&src.text, *o))
            .unwrap_or((1, 1))
    };
    for t in parsed.templates() {
        let (line, column) = pos(t.id());
        errors.push(Located {
            file: file.to_owned(),
            line,
            column,
            message: "a policy file holds static policies only; templates (`?principal`, `?resource`) \
                      are for resource-owner sharing"
                .into(),
        });
    }
    let mut seen = HashSet::new();
    let mut policies: Vec<&Policy> = parsed.policies().collect();
    policies.sort_by_cached_key(|p| source_number(p.id()));
    let mut out = Vec::with_capacity(policies.len());
    for p in policies {
        let at = |message: String| {
            let (line, column) = pos(p.id());
            Located { file: file.to_owned(), line, column, message }
        };
        let Some(name) = annotation(p, "id") else {
            errors.push(at("policy has no `@id(\"…\")` annotation; every policy needs a stable id".into()));
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
            errors.push(at(format!("`@id(\"{name}\")` must be letters, digits and `-_.:` only")));
            continue;
        }
        if !seen.insert(name.to_owned()) {
            errors.push(at(format!("`@id(\"{name}\")` is used twice in this file")));
            continue;
        }
        match annotation(p, "approval") {
            None => {}
            Some("owner") if p.effect() == Effect::Permit => {}
            Some("owner") => errors.push(at("`@approval` belongs on a `permit`, not a `forbid`".into())),
            Some(other) => errors.push(at(format!("`@approval(\"{other}\")`: the only approver is \"owner\""))),
        }
        out.push(p.new_id(PolicyId::new(format!("{}#{name}", src.rel))));
    }
    out
}

fn slice<'a>(all: impl Iterator<Item = &'a Policy>, groups: &ActionGroups) -> Result<Slices, String> {
    let scopes: Vec<&String> = groups.keys().collect();
    // Which scopes each policy admits, worked out once: the unscoped policies go into every type's sets.
    let with_scopes = |p: &'a Policy| (p, scopes.iter().map(|s| admits(p, s, groups)).collect::<Vec<bool>>());
    let mut keyed: BTreeMap<String, Vec<(&Policy, Vec<bool>)>> = BTreeMap::new();
    let mut owners: BTreeMap<String, Vec<(&Policy, Vec<bool>)>> = BTreeMap::new();
    let mut resources: BTreeMap<String, Vec<(&Policy, Vec<bool>)>> = BTreeMap::new();
    let mut any = Vec::new();
    for p in all {
        match slice_key(p) {
            SliceKey::Any => any.push(with_scopes(p)),
            SliceKey::Type(t) => keyed.entry(t).or_default().push(with_scopes(p)),
            SliceKey::Owner(o) => owners.entry(o).or_default().push(with_scopes(p)),
            SliceKey::Resource(r) => resources.entry(r).or_default().push(with_scopes(p)),
        }
    }
    // One set per scope, of the policies of `base` and `own` that admit it, for the scopes some
    // policy of `own` admits.
    type Admitting<'p> = (&'p Policy, Vec<bool>);
    let by_scope = |base: &[Admitting<'_>], own: &[Admitting<'_>]| -> Result<HashMap<String, PolicySet>, String> {
        let mut out = HashMap::new();
        for (i, scope) in scopes.iter().enumerate() {
            let admitted = |(_, a): &&Admitting<'_>| a.get(i).copied().unwrap_or(true);
            if !own.iter().any(|x| admitted(&x)) {
                continue;
            }
            let matching = base.iter().chain(own).filter(admitted).map(|(p, _)| (*p).clone());
            out.insert((*scope).clone(), PolicySet::from_policies(matching).map_err(|e| e.to_string())?);
        }
        Ok(out)
    };
    let mut slices = Slices { any: by_scope(&[], &any)?, ..Slices::default() };
    for (t, ps) in keyed {
        slices.for_type.insert(t, by_scope(&any, &ps)?);
    }
    for (o, ps) in owners {
        slices.for_owner.insert(o, by_scope(&[], &ps)?);
    }
    for (r, ps) in resources {
        slices.for_resource.insert(r, by_scope(&[], &ps)?);
    }
    Ok(slices)
}

/// The action entities with at least one ancestor (the schema's action hierarchy is already
/// transitively closed, so a member keeps every group above it even when the groups are left out).
fn in_a_group(
    action_entities: Vec<cedar_policy::Entity>,
    hierarchy: Option<&cedar_policy::Entities>,
) -> Vec<cedar_policy::Entity> {
    let Some(all) = hierarchy else {
        return action_entities;
    };
    action_entities.into_iter().filter(|e| all.ancestors(&e.uid()).is_some_and(|mut a| a.next().is_some())).collect()
}

fn action_groups(hierarchy: Option<&cedar_policy::Entities>, scopes: &HashSet<String>) -> ActionGroups {
    scopes
        .iter()
        .map(|scope| {
            let mut ids = HashSet::from([scope.clone()]);
            if let (Some(entities), Ok(u)) = (hierarchy, super::entities::uid(ACTION, scope))
                && let Some(ancestors) = entities.ancestors(&u)
            {
                ids.extend(ancestors.map(|a| a.id().unescaped().to_owned()));
            }
            (scope.clone(), ids)
        })
        .collect()
}

/// Where the loader looks: the configured folder and schema.
#[derive(Debug, Clone)]
pub struct PolicyPaths {
    pub dir: PathBuf,
    pub schema: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "ab\ncd\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 1), (1, 2));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 4), (2, 2));
    }

    const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/tessera.cedarschema");

    /// Files scoped every way the slicer knows: by type, owner and resource, and not at all; one
    /// scope, several, an action group of none, every scope.
    fn files(revision: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for n in 0..4 {
            out.push((
                format!("clinic-{n}.cedar"),
                format!(
                    r#"@id("chart") permit (principal, action in [Tessera::Action::"read", Tessera::Action::"view"], resource in Tessera::ResourceType::"chart-{n}")
                       when {{ principal has npi && principal.npi == "{}" }};
                       @id("team") permit (principal, action == Tessera::Action::"read", resource in Tessera::Owner::"patient-{n}")
                       when {{ principal has role && principal.role == "physician" }};
                       @id("lab") @approval("owner") permit (principal, action == Tessera::Action::"read", resource == Tessera::Resource::"lab-{n}")
                       when {{ principal has iss && principal.iss == "https://idp-{n}.test" }};
                       @id("blocks") forbid (principal, action, resource in Tessera::Owner::"patient-{n}")
                       when {{ principal has email && principal.email == "blocked-{n}@test" }};"#,
                    1000 + n * 10 + if n == 1 { revision } else { 0 }
                ),
            ));
        }
        out.push((
            "sub/any.cedar".into(),
            r#"@id("no-write") forbid (principal, action in [Tessera::Action::"write", Tessera::Action::"delete"], resource)
               when { principal has groups && principal.groups.contains("readonly") };
               @id("public") permit (principal, action == Tessera::Action::"view", resource) when { resource.name like "public:*" };"#
                .into(),
        ));
        out
    }

    fn folder(files: &[(String, String)], schema_extra: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("dir");
        for (rel, text) in files {
            let path = dir.path().join("policies").join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        let schema = dir.path().join("schema.cedarschema");
        let text = std::fs::read_to_string(SCHEMA).expect("schema") + schema_extra;
        std::fs::write(&schema, text).expect("write schema");
        (dir, schema)
    }

    fn read(dir: &tempfile::TempDir, schema: &Path) -> Snapshot {
        Snapshot::read(&dir.path().join("policies"), schema).expect("read")
    }

    fn ids(set: &PolicySet) -> BTreeSet<String> {
        set.policies().map(|p| p.id().to_string()).collect()
    }

    /// Everything a set gives the engine, in comparable form.
    fn contents(l: &LoadedPolicies) -> String {
        let sets =
            |m: &HashMap<String, HashMap<String, PolicySet>>| -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
                m.iter().map(|(k, v)| (k.clone(), v.iter().map(|(s, set)| (s.clone(), ids(set))).collect())).collect()
            };
        let any: BTreeMap<_, _> = l.slices.any.iter().map(|(s, set)| (s.clone(), ids(set))).collect();
        let needs: BTreeMap<String, &BTreeSet<String>> =
            l.permit_needs.iter().map(|(id, n)| (id.to_string(), &n.attrs)).collect();
        let approval: BTreeSet<String> = l.approval.iter().map(ToString::to_string).collect();
        format!(
            "{} {} {} {:?} {any:?} {:?} {:?} {:?} {needs:?} {:?} {approval:?}",
            l.count(),
            l.files,
            l.fingerprint,
            l.warnings,
            sets(&l.slices.for_type),
            sets(&l.slices.for_owner),
            sets(&l.slices.for_resource),
            l.forbid_attrs,
        )
    }

    #[test]
    fn a_reload_takes_over_unchanged_files_and_gives_what_a_full_load_gives() {
        let (dir, schema) = folder(&files(0), "");
        let first = LoadedPolicies::build(&read(&dir, &schema), &dir.path().join("policies"), &schema).expect("valid");
        assert_eq!(first.count(), 18);

        // One policy of one file changes.
        for (rel, text) in files(1) {
            std::fs::write(dir.path().join("policies").join(rel), text).expect("write");
        }
        let snap = read(&dir, &schema);
        let policies = dir.path().join("policies");
        let fresh = LoadedPolicies::build(&snap, &policies, &schema).expect("valid");
        let reloaded = LoadedPolicies::rebuild(&first, &snap, &policies, &schema).expect("valid");
        assert_eq!(contents(&reloaded), contents(&fresh));
        assert_ne!(contents(&reloaded), contents(&first));
        let taken_over: Vec<&str> = reloaded
            .units
            .iter()
            .filter(|u| first.units.iter().any(|f| Arc::ptr_eq(f, u)))
            .map(|u| u.rel.as_str())
            .collect();
        assert_eq!(taken_over, ["clinic-0.cedar", "clinic-2.cedar", "clinic-3.cedar", "sub/any.cedar"]);

        // A broken edit is refused the same way either way.
        std::fs::write(
            policies.join("clinic-2.cedar"),
            "@id(\"x\") permit (principal, action, resource) when { principal.nope };",
        )
        .expect("write");
        let snap = read(&dir, &schema);
        let full = LoadedPolicies::build(&snap, &policies, &schema).map(|_| ()).expect_err("invalid").to_string();
        let re = LoadedPolicies::rebuild(&reloaded, &snap, &policies, &schema).map(|_| ()).expect_err("invalid");
        assert_eq!(re.to_string(), full);
        assert!(full.contains("clinic-2.cedar:1:"), "{full}");
    }

    #[test]
    fn a_changed_schema_revalidates_every_file() {
        let (dir, schema) = folder(&files(0), "");
        let policies = dir.path().join("policies");
        let first = LoadedPolicies::build(&read(&dir, &schema), &policies, &schema).expect("valid");
        std::fs::write(&schema, std::fs::read_to_string(&schema).expect("schema") + "\n// edited\n").expect("write");
        let reloaded = LoadedPolicies::rebuild(&first, &read(&dir, &schema), &policies, &schema).expect("valid");
        assert!(reloaded.units.iter().all(|u| first.units.iter().all(|f| !Arc::ptr_eq(f, u))));
        assert_eq!(reloaded.count(), first.count());
    }

    #[test]
    fn slices_hold_exactly_the_policies_that_can_apply() {
        let (dir, schema) = folder(&files(0), "");
        let loaded = LoadedPolicies::build(&read(&dir, &schema), &dir.path().join("policies"), &schema).expect("valid");
        let all: Vec<&Policy> = loaded.units.iter().flat_map(|u| &u.policies).collect();
        let types = ["chart-0", "chart-3", "other", ""];
        let keys = ["patient-0", "patient-2", "lab-1", "lab-3", "nobody"];
        let mut checked = 0;
        for ty in types {
            for owner in keys {
                for resource in keys {
                    for scope in &loaded.actions {
                        let rtype = Some(ty).filter(|t| !t.is_empty());
                        let mut got = Vec::new();
                        for set in loaded.slices.sets_for(rtype, owner, resource, scope) {
                            got.extend(ids(set));
                        }
                        let mut want: Vec<String> = all
                            .iter()
                            .filter(|p| admits(p, scope, &loaded.action_groups))
                            .filter(|p| match slice_key(p) {
                                SliceKey::Any => true,
                                SliceKey::Type(t) => t == ty,
                                SliceKey::Owner(o) => o == owner,
                                SliceKey::Resource(r) => r == resource,
                            })
                            .map(|p| p.id().to_string())
                            .collect();
                        want.sort();
                        got.sort();
                        // Each applicable policy exactly once.
                        assert_eq!(got, want, "{ty} {owner} {resource} {scope}");
                        checked += usize::from(!want.is_empty());
                    }
                }
            }
        }
        assert!(checked > 100, "{checked}");
    }
}
