//! Loading: every `*.cedar` file under the policies folder (subfolders included, hidden entries
//! skipped), parsed, given stable ids and validated in strict mode against the schema. The result is
//! a [`LoadedPolicies`], the only form of policies the engine evaluates: raw text never gets there.
//!
//! Ids are `<path relative to the folder>#<@id>`, e.g. `heart/fhir.cedar#physicians-read`. Cedar
//! does not apply `@id` by itself; the loader does, and refuses a policy without one, so an audit
//! record always names a policy a person can find.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::str::FromStr;

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
    let number = |id: &PolicyId| id.to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(usize::MAX);
    let mut items: Vec<(usize, PolicyId, String)> = parsed
        .policies()
        .filter_map(|p| p.to_cedar().map(|t| (number(p.id()), p.id().clone(), t)))
        .chain(parsed.templates().map(|t| (number(t.id()), t.id().clone(), t.to_cedar())))
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
    /// type -> scope -> `any` plus the policies scoped to that type.
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
        let base = match resource_type.and_then(|t| self.for_type.get(t)) {
            Some(by_scope) => by_scope.get(scope),
            None => self.any.get(scope),
        };
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

/// Validated policies: the engine's only input. Built by [`LoadedPolicies::build`].
#[derive(Debug)]
pub(crate) struct LoadedPolicies {
    pub schema: Option<Schema>,
    pub shape: PartyShape,
    /// Scopes the schema declares.
    pub actions: HashSet<String>,
    /// The schema's action entities, built once.
    pub action_entities: Vec<cedar_policy::Entity>,
    pub action_groups: ActionGroups,
    /// Every file policy, by id (for the CLI, required-claims fallback and counting).
    pub all: PolicySet,
    pub slices: Slices,
    /// What each permit could need from the party (see `required_claims::may_need_claims`).
    pub permit_needs: HashMap<PolicyId, super::required_claims::PermitNeeds>,
    /// Every party attribute some `forbid` reads: a PCT must keep these, or leaving one out could
    /// silently disarm the forbid on a later request.
    pub forbid_attrs: std::collections::BTreeSet<String>,
    /// Ids of permits annotated `@approval("owner")`.
    pub approval: HashSet<PolicyId>,
    /// One share template per declared scope.
    pub share_templates: HashMap<String, Template>,
    pub files: usize,
    pub fingerprint: u64,
    pub warnings: Vec<String>,
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
            all: PolicySet::new(),
            permit_needs: HashMap::new(),
            forbid_attrs: Default::default(),
            slices: Slices::default(),
            approval: HashSet::new(),
            share_templates: HashMap::new(),
            files: 0,
            fingerprint,
            warnings: Vec::new(),
        }
    }

    pub fn count(&self) -> usize {
        self.all.num_of_policies()
    }

    /// Parses, names and validates a snapshot. `dir` and `schema` are only used in messages.
    pub fn build(snap: &Snapshot, dir: &Path, schema_path: &Path) -> Result<Self, LoadError> {
        Self::build_inner(snap, dir, schema_path, true)
    }

    /// Without strict validation: only for tests of what the evaluator does with policies that
    /// fail at run time.
    #[cfg(test)]
    pub fn build_unvalidated(snap: &Snapshot, dir: &Path, schema_path: &Path) -> Result<Self, LoadError> {
        Self::build_inner(snap, dir, schema_path, false)
    }

    fn build_inner(snap: &Snapshot, dir: &Path, schema_path: &Path, validate: bool) -> Result<Self, LoadError> {
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
        let action_groups = action_groups(&action_entities, &actions);

        let mut errors = Vec::new();
        let mut all = PolicySet::new();
        // Where each policy came from, to locate validation errors.
        let mut origin: HashMap<PolicyId, usize> = HashMap::new();
        for (index, src) in snap.sources.iter().enumerate() {
            let file = shown(&src.rel);
            let parsed = match PolicySet::from_str(&src.text) {
                Ok(p) => p,
                Err(errs) => {
                    errors.extend(errs.iter().map(|e| locate(&file, &src.text, e)));
                    continue;
                }
            };
            let offsets = source_offsets(&parsed, &src.text);
            let pos = |id: &PolicyId| offsets.get(id).map(|o| line_col(&src.text, *o)).unwrap_or((1, 1));
            for t in parsed.templates() {
                let (line, column) = pos(t.id());
                errors.push(Located {
                    file: file.clone(),
                    line,
                    column,
                    message: "a policy file holds static policies only; templates (`?principal`, `?resource`) \
                              are for resource-owner sharing"
                        .into(),
                });
            }
            let mut seen = HashSet::new();
            let mut policies: Vec<&Policy> = parsed.policies().collect();
            policies.sort_by_key(|p| offsets.get(p.id()).copied().unwrap_or(0));
            for p in policies {
                let (line, column) = pos(p.id());
                let at = |message: String| Located { file: file.clone(), line, column, message };
                let Some(name) = p.annotation("id") else {
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
                match p.annotation("approval") {
                    None => {}
                    Some("owner") if p.effect() == Effect::Permit => {}
                    Some("owner") => errors.push(at("`@approval` belongs on a `permit`, not a `forbid`".into())),
                    Some(other) => errors.push(at(format!("`@approval(\"{other}\")`: the only approver is \"owner\""))),
                }
                let id = PolicyId::new(format!("{}#{name}", src.rel));
                origin.insert(id.clone(), index);
                if let Err(e) = all.add(p.new_id(id)) {
                    errors.push(at(e.to_string()));
                }
            }
        }
        if !errors.is_empty() {
            return Err(LoadError::Invalid(errors));
        }

        if validate {
            let result = Validator::new(schema.clone()).validate(&all, ValidationMode::Strict);
            for e in result.validation_errors() {
                errors.push(match origin.get(e.policy_id()).and_then(|i| snap.sources.get(*i)) {
                    Some(src) => locate(&shown(&src.rel), &src.text, e),
                    None => Located { file: e.policy_id().to_string(), line: 1, column: 1, message: e.to_string() },
                });
            }
            for w in result.validation_warnings() {
                let at = match origin.get(w.policy_id()).and_then(|i| snap.sources.get(*i)) {
                    Some(src) => locate(&shown(&src.rel), &src.text, w),
                    None => Located { file: w.policy_id().to_string(), line: 1, column: 1, message: w.to_string() },
                };
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

        let permit_needs = all
            .policies()
            .filter(|p| p.effect() == Effect::Permit)
            .map(|p| (p.id().clone(), super::required_claims::PermitNeeds::of(p)))
            .collect();
        let forbid_attrs = all
            .policies()
            .filter(|p| p.effect() == Effect::Forbid)
            .flat_map(|p| super::required_claims::PermitNeeds::of(p).attrs)
            .collect();
        let approval =
            all.policies().filter(|p| p.annotation("approval") == Some("owner")).map(|p| p.id().clone()).collect();
        let slices = slice(&all, &action_groups).map_err(|message| {
            LoadError::Invalid(vec![Located { file: dir.display().to_string(), line: 1, column: 1, message }])
        })?;
        Ok(LoadedPolicies {
            schema: Some(schema),
            shape,
            actions,
            action_entities,
            action_groups,
            all,
            permit_needs,
            forbid_attrs,
            slices,
            approval,
            share_templates,
            files: snap.sources.len(),
            fingerprint,
            warnings,
        })
    }
}

fn slice(all: &PolicySet, groups: &ActionGroups) -> Result<Slices, String> {
    let mut keyed: BTreeMap<String, Vec<Policy>> = BTreeMap::new();
    let mut owners: BTreeMap<String, Vec<Policy>> = BTreeMap::new();
    let mut resources: BTreeMap<String, Vec<Policy>> = BTreeMap::new();
    let mut any = Vec::new();
    for p in all.policies() {
        match slice_key(p) {
            SliceKey::Any => any.push(p.clone()),
            SliceKey::Type(t) => keyed.entry(t).or_default().push(p.clone()),
            SliceKey::Owner(o) => owners.entry(o).or_default().push(p.clone()),
            SliceKey::Resource(r) => resources.entry(r).or_default().push(p.clone()),
        }
    }
    // One set per scope, of the policies that admit it.
    let by_scope = |ps: &[Policy]| -> Result<HashMap<String, PolicySet>, String> {
        let mut out = HashMap::new();
        for scope in groups.keys() {
            let matching: Vec<Policy> = ps.iter().filter(|p| admits(p, scope, groups)).cloned().collect();
            if !matching.is_empty() {
                out.insert(scope.clone(), PolicySet::from_policies(matching).map_err(|e| e.to_string())?);
            }
        }
        Ok(out)
    };
    let mut slices = Slices { any: by_scope(&any)?, ..Slices::default() };
    for (t, ps) in keyed {
        let mut all_for_type = any.clone();
        all_for_type.extend(ps);
        slices.for_type.insert(t, by_scope(&all_for_type)?);
    }
    for (o, ps) in owners {
        slices.for_owner.insert(o, by_scope(&ps)?);
    }
    for (r, ps) in resources {
        slices.for_resource.insert(r, by_scope(&ps)?);
    }
    Ok(slices)
}

fn action_groups(action_entities: &[cedar_policy::Entity], scopes: &HashSet<String>) -> ActionGroups {
    let entities = cedar_policy::Entities::from_entities(action_entities.iter().cloned(), None).ok();
    scopes
        .iter()
        .map(|scope| {
            let mut ids = HashSet::from([scope.clone()]);
            if let (Some(entities), Ok(u)) = (&entities, super::entities::uid(ACTION, scope))
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
}
