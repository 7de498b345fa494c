//! ringraft-net: placeholder, built by issue 3.
