//! ringraft-wal: placeholder, built by issue 2.
