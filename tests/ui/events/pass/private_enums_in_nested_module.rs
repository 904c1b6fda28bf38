mod app {
    pub(crate) mod events {
        use liweb::prelude::*;

        // Private: the keys are reachable wherever the enum is.
        #[derive(Events)]
        enum LocalIn {
            Ping,
            Note { text: String },
        }

        #[derive(Events)]
        pub(crate) enum CrateIn {
            Hello(String),
            Bye { reason: String },
        }

        #[derive(Events)]
        pub(super) enum ParentOut {
            Pong,
        }

        pub(crate) fn local() {
            let _ = local_in::Ping;
            let note = local_in::Note { text: "x".into() };
            let _ = note.text;
            let _: LocalIn = LocalIn::from(local_in::Note { text: "y".into() });
            let _ = LocalIn::Ping;
        }
    }

    pub(crate) fn parent() {
        let _ = events::parent_out::Pong;
        let _ = events::ParentOut::Pong;
    }
}

use app::events::{CrateIn, crate_in};

fn main() {
    app::events::local();
    app::parent();
    let bye = crate_in::Bye {
        reason: "done".into(),
    };
    let _ = bye.reason.len();
    let _: CrateIn = bye.into();
    let _: CrateIn = CrateIn::Hello(String::new());
    let _ = crate_in::Hello;
}
