"""clinfo's Streamlit chat app: ``streamlit run app.py`` (needs ``pip install -e '.[app]'``).

Kept thin on purpose: the page lives in clinfo/app/page.py, where it can be imported and tested.
"""

from clinfo.app.page import main

main()
