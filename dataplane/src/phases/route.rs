//! Route: the route of a Stage for a method and a Stage-relative path, with AWS's priorities
//! (the trie engine is [`crate::router`]), and the compiled routes themselves.

use crate::integration::CompiledIntegration;
use crate::metrics::RouteMetrics;
use crate::router::{method_index, Found, RouteDef, RouteTable, Template};

/// One route of a Stage, ready to serve.
pub struct CompiledRoute {
    /// `namespace/name` of the ApiRoute.
    pub label: String,
    /// The path template, `$context.resourcePath`.
    pub resource_path: String,
    /// Upper-case methods (`ANY` alone answers all).
    pub methods: Vec<String>,
    /// Whether the last parameter is greedy.
    pub greedy: bool,
    /// Path parameter names, in template order.
    pub params: Vec<String>,
    /// What serves it.
    pub integration: CompiledIntegration,
    /// Metric handles (kept by the runtime across pushes).
    pub metrics: RouteMetrics,
    /// The route's bucket on its Stage (kept by the runtime across pushes).
    pub throttle: Option<std::sync::Arc<crate::phases::throttle::Bucket>>,
    /// Whether a request needs an API key (AWS `apiKeyRequired`).
    pub api_key_required: bool,
    /// The authorizer a request must pass, and the scopes.
    pub authorization: Option<crate::authorizer::RouteAuth>,
    /// Usage plans' per-key limits on this route.
    pub plan_limits: Vec<crate::phases::api_key::PlanRouteLimit>,
}

impl CompiledRoute {
    /// `$context.routeKey`: `GET /pets/{id}`, or `ANY /pets/{id}` for a route answering the
    /// method through `ANY`.
    pub fn route_key(&self, method: &http::Method) -> String {
        let m = if self.methods.iter().any(|m| m == method.as_str()) {
            method.as_str()
        } else {
            "ANY"
        };
        format!("{m} {}", self.resource_path)
    }
}

/// A route definition before its table is built.
pub struct RouteInput {
    /// The parsed path template.
    pub template: Template,
    /// The route.
    pub route: CompiledRoute,
}

/// The routes of one Stage and their tries.
#[derive(Default)]
pub struct Routes {
    table: RouteTable,
    routes: Vec<CompiledRoute>,
}

/// A route found: its index and raw parameter values in template order.
pub struct RouteMatch<'p> {
    /// Index of the route in its Stage.
    pub route: usize,
    /// Raw (still percent-encoded) values.
    pub params: smallvec::SmallVec<[&'p str; 4]>,
}

impl Routes {
    /// Builds the tries; routes that cannot be placed are returned (their index in `inputs`)
    /// with why.
    pub fn build(inputs: Vec<RouteInput>) -> (Routes, Vec<(usize, String)>) {
        let defs: Vec<RouteDef<'_>> = inputs
            .iter()
            .map(|i| RouteDef {
                template: &i.template,
                methods: &i.route.methods,
            })
            .collect();
        let (table, failed) = RouteTable::build(&defs);
        let routes = inputs.into_iter().map(|i| i.route).collect();
        (Routes { table, routes }, failed)
    }

    /// The route for a method and a Stage-relative path.
    pub fn find<'p>(&self, method: &http::Method, rest: &'p str) -> Option<RouteMatch<'p>> {
        let m = method_index(method)?;
        let Found { route, params } = self.table.find(m, rest)?;
        self.routes.get(route)?;
        Some(RouteMatch { route, params })
    }

    /// The route at `index`.
    pub fn get(&self, index: usize) -> Option<&CompiledRoute> {
        self.routes.get(index)
    }

    /// Every route.
    pub fn iter(&self) -> impl Iterator<Item = &CompiledRoute> {
        self.routes.iter()
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}
