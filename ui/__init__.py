"""The Streamlit shell around the library: page setup, sidebar, error states and charts."""
