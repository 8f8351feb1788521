"""procurement: entry point. Shared page setup lives in pages/common.py; pages call the library."""

import streamlit as st

st.set_page_config(page_title="procurement", page_icon=":material/shopping_cart:", layout="wide")

pages = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/product.py", title="Product", icon=":material/show_chart:", url_path="product"),
    st.Page("pages/recommendations.py", title="Recommendations", icon=":material/list_alt:"),
    st.Page("pages/model.py", title="Model", icon=":material/model_training:"),
]
st.navigation(pages).run()
