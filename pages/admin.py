import pandas as pd
import streamlit as st

from pages.common import engine
from procurement import auth
from procurement.db import catalog, session

st.title("Admin")
principal: auth.Principal = st.session_state["principal"]
auth.authorize(principal, "admin")  # the page is only listed for admins; refuse direct loads too

with session(engine()) as s:
    tenants = catalog.list_tenants(s)
    users = auth.list_users(s)
names = {t.id: t.slug for t in tenants}
st.subheader("Users")
st.dataframe(
    pd.DataFrame(
        [
            {
                "username": u.username,
                "name": u.name,
                "role": u.role,
                "company": names.get(u.tenant_id, "all"),
                "active": u.active,
                "failed logins": u.failed_logins,
                "locked until": u.locked_until,
            }
            for u in users
        ]
    ),
    hide_index=True,
    width="stretch",
)

left, right = st.columns(2)
with left, st.form("new_user", clear_on_submit=True):
    st.markdown("**New user**")
    username = st.text_input("Username")
    name = st.text_input("Name")
    role = st.selectbox("Role", auth.ROLES, index=1)
    company = st.selectbox(
        "Company", [None, *names.values()], format_func=lambda x: x or "all (admins only)"
    )
    password = st.text_input("Initial password (10+ characters)", type="password")
    if st.form_submit_button("Create user"):
        try:
            with session(engine()) as s, s.begin():
                tid = next((i for i, slug in names.items() if slug == company), None)
                auth.create_user(s, username, password, role, tid, name=name)
            st.success(f"User {username} created")
        except ValueError as exc:
            st.error(str(exc))

with right:
    st.markdown("**Existing user**")
    who = st.selectbox("User", [u.username for u in users], key="admin_user")
    new_pw = st.text_input("New password", type="password", key="admin_pw")
    c1, c2, c3 = st.columns(3)
    try:
        if c1.button("Reset password", key="reset_pw"):
            with session(engine()) as s, s.begin():
                auth.set_password(s, who, new_pw)
            st.success("Password reset; the account is unlocked.")
        if c2.button("Deactivate", key="deactivate"):
            with session(engine()) as s, s.begin():
                auth.set_active(s, who, False)
            st.rerun()
        if c3.button("Activate", key="activate"):
            with session(engine()) as s, s.begin():
                auth.set_active(s, who, True)
            st.rerun()
    except ValueError as exc:
        st.error(str(exc))

with st.form("new_company", clear_on_submit=True):
    st.markdown("**New company**")
    slug = st.text_input("Short name (letters, digits, dashes)")
    cname = st.text_input("Name")
    if st.form_submit_button("Create company"):
        if not slug or not slug.replace("-", "").isalnum():
            st.error("The short name may contain letters, digits and dashes only.")
        else:
            with session(engine()) as s, s.begin():
                catalog.get_or_create_tenant(s, slug.lower(), cname or None)
            st.success(f"Company {slug} created")
