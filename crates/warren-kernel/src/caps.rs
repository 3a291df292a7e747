//! Capability objects and their derivation tree.
//!
//! A capability is a kernel object; environments refer to it through a handle in their c-list,
//! and a message in flight refers to the capabilities attached to it. Every capability except
//! the ones minted from policy (initial grants, lookups) and the mailbox owners' RECEIVE
//! capabilities has a parent: the capability it was derived from (attenuation, attachment to a
//! message, or the owner's RECEIVE capability for a one-shot reply). Revocation walks that tree.
//!
//! Each object has at most one holder (one c-list entry or one queued message). When its holder
//! lets go, the object is kept only while the tree needs it:
//! - with no children it is freed, and its parent is re-examined;
//! - with no use limit it is spliced out (its children move to its parent): revocation through
//!   an ancestor still reaches them, and their rights are still within the ancestor's;
//! - with a use limit and one child, the limit is pushed down into the child (the child's
//!   remaining uses become the smaller of the two) and it is spliced out;
//! - with a use limit and several children it stays: it holds the budget they share.
//!
//! So an unheld object is kept only as a branching point of a budget, and there are fewer of
//! those than held objects: memory stays bounded by what the tables and mailboxes hold.

use std::collections::HashMap;

use warren_proto::Rights;

use crate::Millis;
use crate::mailbox::MailboxId;

/// A capability object's identity in the kernel: allocated from a counter, never reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Ord, PartialOrd)]
pub(crate) struct CapId(pub(crate) u64);

/// One capability object.
#[derive(Debug)]
pub(crate) struct Cap {
    /// The mailbox it designates.
    pub(crate) mailbox: MailboxId,
    /// What it allows.
    pub(crate) rights: Rights,
    /// Sends left through this object (shared with its descendants); `None` = unlimited.
    pub(crate) uses_left: Option<u32>,
    /// The instant from which it is expired.
    pub(crate) expires_at: Option<Millis>,
    /// The badge receivers see for messages sent through it.
    pub(crate) badge: u64,
    /// What it was derived from.
    pub(crate) parent: Option<CapId>,
    /// What was derived from it (unordered).
    pub(crate) children: Vec<CapId>,
    /// Revoked through an ancestor: every later use fails.
    pub(crate) revoked: bool,
    /// Minted as (or derived from) a one-shot reply capability.
    pub(crate) reply: bool,
    /// Referred to by a c-list entry or a queued message.
    pub(crate) held: bool,
    /// This object or an ancestor has a use limit: a send must consult the chain.
    pub(crate) metered: bool,
}

/// What a new capability object looks like (its parent is given separately).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CapSpec {
    pub(crate) mailbox: MailboxId,
    pub(crate) rights: Rights,
    pub(crate) uses_left: Option<u32>,
    pub(crate) expires_at: Option<Millis>,
    pub(crate) badge: u64,
    pub(crate) reply: bool,
}

/// Every capability object, by id.
#[derive(Debug, Default)]
pub(crate) struct Caps {
    map: HashMap<CapId, Cap>,
    next: u64,
}

impl Caps {
    /// The object `id`. Every id the kernel keeps (in a table, a message, a parent or children
    /// link) names a live object; a missing one is a kernel bug.
    pub(crate) fn get(&self, id: CapId) -> &Cap {
        &self.map[&id]
    }

    fn get_mut(&mut self, id: CapId) -> &mut Cap {
        self.map
            .get_mut(&id)
            .expect("capability ids in the kernel name live objects")
    }

    /// The object `id`, if it exists (for debugging views).
    pub(crate) fn find(&self, id: CapId) -> Option<&Cap> {
        self.map.get(&id)
    }

    /// How many objects exist.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Creates a held object, derived from `parent` if given.
    pub(crate) fn mint(&mut self, spec: CapSpec, parent: Option<CapId>) -> CapId {
        let id = CapId(self.next);
        self.next += 1;
        let metered = spec.uses_left.is_some() || parent.is_some_and(|p| self.get(p).metered);
        self.map.insert(
            id,
            Cap {
                mailbox: spec.mailbox,
                rights: spec.rights,
                uses_left: spec.uses_left,
                expires_at: spec.expires_at,
                badge: spec.badge,
                parent,
                children: Vec::new(),
                revoked: false,
                reply: spec.reply,
                held: true,
                metered,
            },
        );
        if let Some(p) = parent {
            self.get_mut(p).children.push(id);
        }
        id
    }

    /// Whether a send through `id` is within every use limit on its chain.
    pub(crate) fn has_uses(&self, id: CapId) -> bool {
        self.has_uses_for(id, 1)
    }

    /// Whether `id` and every limited ancestor have at least `n` uses left.
    pub(crate) fn has_uses_for(&self, id: CapId, n: usize) -> bool {
        let mut cur = Some(id);
        while let Some(c) = cur {
            let cap = self.get(c);
            if !cap.metered {
                break;
            }
            if cap.uses_left.is_some_and(|left| (left as usize) < n) {
                return false;
            }
            cur = cap.parent;
        }
        true
    }

    /// Spends `n` uses of `id` and of every limited ancestor.
    pub(crate) fn consume_n(&mut self, id: CapId, n: usize) {
        if n == 0 || !self.get(id).metered {
            return;
        }
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let mut cur = Some(id);
        while let Some(c) = cur {
            let cap = self.get_mut(c);
            if !cap.metered {
                break;
            }
            if let Some(left) = cap.uses_left.as_mut() {
                *left = left.saturating_sub(n);
            }
            cur = cap.parent;
        }
    }

    /// Spends one use of `id` and of every limited ancestor (they share their budget with what
    /// was derived from them, so a use limit cannot be multiplied by deriving).
    pub(crate) fn consume(&mut self, id: CapId) {
        let mut cur = Some(id);
        while let Some(c) = cur {
            let cap = self.get_mut(c);
            if !cap.metered {
                break;
            }
            if let Some(n) = cap.uses_left.as_mut() {
                *n = n.saturating_sub(1);
            }
            cur = cap.parent;
        }
    }

    /// Marks every descendant of `id` revoked and cuts them out of the tree (a revoked object
    /// can have no further derivations, and nothing is left for a later revocation to reach).
    /// Returns the mailboxes of the objects this freed.
    pub(crate) fn revoke_descendants(&mut self, id: CapId) -> Vec<MailboxId> {
        let mut freed = Vec::new();
        let mut stack = std::mem::take(&mut self.get_mut(id).children);
        while let Some(c) = stack.pop() {
            let cap = self.get_mut(c);
            cap.revoked = true;
            cap.parent = None;
            stack.append(&mut cap.children);
            if !cap.held {
                let mailbox = cap.mailbox;
                self.map.remove(&c);
                freed.push(mailbox);
            }
        }
        freed
    }

    /// The holder of `id` lets go of it. Returns the mailboxes of the objects this freed.
    pub(crate) fn release(&mut self, id: CapId) -> Vec<MailboxId> {
        self.get_mut(id).held = false;
        let mut freed = Vec::new();
        let mut cur = Some(id);
        while let Some(c) = cur.take() {
            let cap = self.get(c);
            if cap.held {
                break;
            }
            if cap.children.is_empty() {
                let cap = self.map.remove(&c).expect("checked above");
                freed.push(cap.mailbox);
                if let Some(p) = cap.parent {
                    self.unlink_child(p, c);
                    cur = Some(p);
                }
            } else if cap.uses_left.is_none() || cap.children.len() == 1 {
                let cap = self.map.remove(&c).expect("checked above");
                freed.push(cap.mailbox);
                if let Some(limit) = cap.uses_left {
                    let child = self.get_mut(cap.children[0]);
                    child.uses_left = Some(child.uses_left.map_or(limit, |n| n.min(limit)));
                }
                for &ch in &cap.children {
                    self.get_mut(ch).parent = cap.parent;
                }
                if let Some(p) = cap.parent {
                    self.unlink_child(p, c);
                    self.get_mut(p).children.extend_from_slice(&cap.children);
                }
            }
        }
        freed
    }

    fn unlink_child(&mut self, parent: CapId, child: CapId) {
        let kids = &mut self.get_mut(parent).children;
        if let Some(i) = kids.iter().position(|&k| k == child) {
            kids.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(uses: Option<u32>) -> CapSpec {
        CapSpec {
            mailbox: MailboxId(7),
            rights: Rights::SEND,
            uses_left: uses,
            expires_at: None,
            badge: 0,
            reply: false,
        }
    }

    #[test]
    fn a_use_limit_is_shared_with_derivations() {
        let mut caps = Caps::default();
        let one = caps.mint(spec(Some(1)), None);
        let a = caps.mint(spec(Some(1)), Some(one));
        let b = caps.mint(spec(None), Some(one));
        assert!(caps.has_uses(a) && caps.has_uses(b));
        caps.consume(a);
        assert!(!caps.has_uses(a));
        assert!(
            !caps.has_uses(b),
            "the sibling shares the parent's single use"
        );
        assert!(!caps.has_uses(one));
    }

    #[test]
    fn unheld_objects_are_spliced_or_kept_as_budget_branch_points() {
        let mut caps = Caps::default();
        let root = caps.mint(spec(None), None);
        let mid = caps.mint(spec(None), Some(root));
        let leaf = caps.mint(spec(None), Some(mid));
        assert!(
            caps.release(mid).len() == 1,
            "unlimited middle object is spliced out"
        );
        assert_eq!(caps.get(leaf).parent, Some(root));
        assert_eq!(caps.get(root).children, vec![leaf]);

        let budget = caps.mint(spec(Some(3)), Some(root));
        let x = caps.mint(spec(None), Some(budget));
        let y = caps.mint(spec(Some(5)), Some(budget));
        assert!(
            caps.release(budget).is_empty(),
            "a shared budget with two children stays"
        );
        // One child left: the budget is pushed down and the object goes too.
        assert_eq!(caps.release(x).len(), 2);
        assert!(caps.find(budget).is_none());
        assert_eq!(caps.get(y).uses_left, Some(3));
        assert_eq!(caps.get(y).parent, Some(root));
        assert_eq!(caps.len(), 3);
    }

    #[test]
    fn revocation_reaches_every_descendant_and_frees_the_unheld() {
        let mut caps = Caps::default();
        let root = caps.mint(spec(None), None);
        let a = caps.mint(spec(Some(2)), Some(root));
        let b = caps.mint(spec(None), Some(a));
        let c = caps.mint(spec(None), Some(a));
        let d = caps.mint(spec(None), Some(c));
        caps.release(a); // kept: budget with two children
        assert!(caps.find(a).is_some());
        let freed = caps.revoke_descendants(root);
        assert_eq!(freed.len(), 1, "only the unheld budget object is freed");
        for id in [b, c, d] {
            let cap = caps.get(id);
            assert!(cap.revoked && cap.parent.is_none() && cap.children.is_empty());
        }
        assert!(!caps.get(root).revoked);
        assert!(caps.get(root).children.is_empty());
    }
}
