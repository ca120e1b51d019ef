"""The Streamlit dashboard (``swingdial dashboard``). It only reads; nothing imports it."""
