//! The changes that take the broker from what it holds to the plan.

use std::fmt;

use super::observed::Observed;
use super::plan::{FleetPlan, Permissions};

/// One change `warren topology apply` would make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A shared exchange to declare.
    DeclareExchange(String),
    /// A queue to declare.
    DeclareQueue(String),
    /// A binding to make, `(exchange, queue, routing key)`.
    Bind(String, String, String),
    /// A worker's user to create.
    AddUser(String),
    /// A user's permissions in the vhost to set (`None`: it has none there yet).
    SetPermissions {
        /// The user.
        user: String,
        /// What it has now.
        current: Option<Permissions>,
        /// What the plan gives it.
        planned: Permissions,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |p: &Permissions| {
            format!(
                "configure {:?} write {:?} read {:?}",
                p.configure, p.write, p.read
            )
        };
        match self {
            Change::DeclareExchange(name) => write!(f, "+ exchange {name}"),
            Change::DeclareQueue(name) => write!(f, "+ queue {name}"),
            Change::Bind(exchange, queue, key) => {
                write!(f, "+ binding {exchange} -> {queue} ({key})")
            }
            Change::AddUser(user) => write!(f, "+ user {user}"),
            Change::SetPermissions {
                user,
                current: None,
                planned,
            } => write!(f, "+ permissions {user}: {}", show(planned)),
            Change::SetPermissions {
                user,
                current: Some(current),
                planned,
            } => write!(
                f,
                "~ permissions {user}: {} (now {})",
                show(planned),
                show(current)
            ),
        }
    }
}

/// What differs between `observed` and `plan`, in apply's order: exchanges, queues,
/// bindings, users, permissions. Only what the plan names is looked at: other users,
/// queues and bindings of the vhost are left alone.
pub fn diff(plan: &FleetPlan, observed: &Observed) -> Vec<Change> {
    let mut changes = Vec::new();
    changes.extend(
        plan.exchanges
            .difference(&observed.exchanges)
            .cloned()
            .map(Change::DeclareExchange),
    );
    changes.extend(
        plan.queues
            .difference(&observed.queues)
            .cloned()
            .map(Change::DeclareQueue),
    );
    changes.extend(
        plan.bindings
            .difference(&observed.bindings)
            .cloned()
            .map(|(exchange, queue, key)| Change::Bind(exchange, queue, key)),
    );
    for access in &plan.users {
        if !observed.users.contains(&access.user) {
            changes.push(Change::AddUser(access.user.clone()));
        }
    }
    for access in &plan.users {
        let current = observed.permissions.get(&access.user);
        if current != Some(&access.permissions) {
            changes.push(Change::SetPermissions {
                user: access.user.clone(),
                current: current.cloned(),
                planned: access.permissions.clone(),
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::plan::{WorkerManifest, plan_fleet};

    fn echo_plan() -> FleetPlan {
        let echo = WorkerManifest {
            name: "echo".to_owned(),
            commands: vec!["dev.warren.echo.v1".to_owned()],
            events: vec![],
            produces: vec!["dev.warren.echo.replied.v1".to_owned()],
        };
        plan_fleet(
            &[echo],
            &[],
            &[std::time::Duration::from_secs(1)],
            "warren-",
        )
        .expect("planned")
    }

    fn as_applied(plan: &FleetPlan) -> Observed {
        Observed {
            users: plan
                .users
                .iter()
                .map(|a| a.user.clone())
                .chain(["guest".to_owned()])
                .collect(),
            permissions: plan
                .users
                .iter()
                .map(|a| (a.user.clone(), a.permissions.clone()))
                .collect(),
            exchanges: plan
                .exchanges
                .iter()
                .cloned()
                .chain(["amq.direct".to_owned()])
                .collect(),
            queues: plan.queues.clone(),
            bindings: plan.bindings.clone(),
        }
    }

    #[test]
    fn an_empty_vhost_needs_everything() {
        let plan = echo_plan();
        let changes = diff(&plan, &Observed::default());
        assert_eq!(
            changes.len(),
            plan.exchanges.len() + plan.queues.len() + plan.bindings.len() + 2
        );
        assert!(changes.contains(&Change::AddUser("warren-echo".to_owned())));
        assert_eq!(changes[0].to_string(), "+ exchange warren.commands");
    }

    #[test]
    fn an_applied_plan_needs_nothing_and_each_gap_is_named() {
        let plan = echo_plan();
        let applied = as_applied(&plan);
        assert_eq!(diff(&plan, &applied), []);

        let mut no_user = applied.clone();
        no_user.users.remove("warren-echo");
        no_user.permissions.remove("warren-echo");
        let changes = diff(&plan, &no_user);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0], Change::AddUser("warren-echo".to_owned()));

        let mut widened = applied.clone();
        if let Some(permissions) = widened.permissions.get_mut("warren-echo") {
            permissions.write = ".*".to_owned();
        }
        let changes = diff(&plan, &widened);
        assert_eq!(changes.len(), 1);
        assert!(
            changes[0]
                .to_string()
                .starts_with("~ permissions warren-echo"),
            "{}",
            changes[0]
        );

        let mut unbound = applied;
        unbound.bindings.clear();
        unbound.queues.remove("warren.echo.dlq");
        let changes = diff(&plan, &unbound);
        assert_eq!(changes.len(), 1 + plan.bindings.len());
        assert_eq!(
            changes[0],
            Change::DeclareQueue("warren.echo.dlq".to_owned())
        );
    }
}
