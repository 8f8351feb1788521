"""Accounts and companies. A global administrator manages every company and account; a company's
administrator the accounts of that company only. The library checks both (procurement.auth);
this page only leaves out what the signed-in administrator may not do."""

from collections.abc import Callable

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session

from procurement import actions
from procurement.auth import ROLES, PermissionDenied, Principal
from procurement.db import open_session
from ui.page import engine, plain

st.title("Admin")
principal: Principal = st.session_state["principal"]
try:
    # the page is only listed for administrators; the actions refuse direct loads too
    with open_session(engine()) as s:
        users = actions.users(principal, session=s)
        tenants = actions.companies(principal, session=s)
except PermissionDenied as exc:
    st.error(plain(exc))
    st.stop()
names = {t.id: t.slug for t in tenants}
st.subheader("Users" if principal.is_global_admin else f"Users of {names[principal.tenant_id]}")
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


def _act(action: Callable[[Session], object]) -> bool:
    """Run one change in its own transaction; show a refusal or a bad value as plain text."""
    try:
        with open_session(engine()) as s, s.begin():
            action(s)
        return True
    except (ValueError, PermissionDenied) as exc:
        st.error(plain(exc))
        return False


# a company's administrator adds accounts to their company only; "all" makes a global admin
companies = [*names.values()] if not principal.is_global_admin else [None, *names.values()]
left, right = st.columns(2)
with left, st.form("new_user", clear_on_submit=True):
    st.markdown("**New user**")
    username = st.text_input("Username")
    name = st.text_input("Name")
    role = st.selectbox("Role", ROLES, index=1)
    company = st.selectbox(
        "Company", companies, format_func=lambda x: x or "all (global administrators only)"
    )
    password = st.text_input("Initial password (10+ characters)", type="password")
    if st.form_submit_button("Create user") and _act(
        lambda s: actions.add_user(
            principal,
            session=s,
            username=username,
            password=password,
            role=role,
            tenant=company,
            name=name,
        )
    ):
        st.success(plain(f"User {username.strip().lower()} created"))

with right:
    st.markdown("**Existing user**")
    who = st.selectbox("User", [u.username for u in users], key="admin_user")
    new_pw = st.text_input("New password", type="password", key="admin_pw")
    new_role = st.selectbox("Role", ROLES, key="admin_role")
    c1, c2, c3, c4 = st.columns(4)
    if c1.button("Reset password", key="reset_pw") and _act(
        lambda s: actions.set_password(principal, session=s, username=who, password=new_pw)
    ):
        st.success("Password reset; the account is unlocked.")
    if c2.button("Deactivate", key="deactivate") and _act(
        lambda s: actions.set_active(principal, session=s, username=who, active=False)
    ):
        st.rerun()
    if c3.button("Activate", key="activate") and _act(
        lambda s: actions.set_active(principal, session=s, username=who, active=True)
    ):
        st.rerun()
    if c4.button("Set role", key="set_role") and _act(
        lambda s: actions.set_role(principal, session=s, username=who, role=new_role)
    ):
        st.rerun()

if principal.is_global_admin:
    with st.form("new_company", clear_on_submit=True):
        st.markdown("**New company**")
        slug = st.text_input("Short name (lowercase letters, digits, dashes)")
        cname = st.text_input("Name")
        if st.form_submit_button("Create company") and _act(
            lambda s: actions.create_company(principal, session=s, slug=slug, name=cname)
        ):
            st.success(plain(f"Company {slug.strip().lower()} created"))
