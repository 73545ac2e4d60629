"""The PDF: WeasyPrint lays out `render.pdf_html`'s HTML, fitted to the page.

`make.render_pdf` runs it all: `atlas` typesets each formula once as an SVG image (cached),
`fit` searches the largest font size that fits (layouts in parallel, cached), `engine` holds
WeasyPrint (its fonts, the URL fetcher that allows only our assets, the PNG preview).
`render.pdf_html` (pure) writes the HTML these lay out.
"""
