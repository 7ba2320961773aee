//! The node policy's `store-view` setting: how store views are made on this node
//! ([`crate::assemble::view`]).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The node policy's `store-view` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViewSetting {
    /// A link farm where the view directory allows one, else a bind tree.
    #[default]
    Auto,
    /// Always a link farm; a view that cannot be linked fails.
    LinkFarm,
    /// Always a bind tree.
    BindTree,
}

impl ViewSetting {
    /// The setting's name: `auto`, `link-farm` or `bind-tree`.
    pub fn as_str(self) -> &'static str {
        match self {
            ViewSetting::Auto => "auto",
            ViewSetting::LinkFarm => "link-farm",
            ViewSetting::BindTree => "bind-tree",
        }
    }
}

impl FromStr for ViewSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(ViewSetting::Auto),
            "link-farm" => Ok(ViewSetting::LinkFarm),
            "bind-tree" => Ok(ViewSetting::BindTree),
            other => Err(format!(
                "{other:?} is not a store view mechanism; expected \"auto\", \"link-farm\" or \"bind-tree\""
            )),
        }
    }
}
