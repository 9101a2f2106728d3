"""``ptxseg listen``: a DICOM node any PACS can route to — C-STORE in; SEG, SC and SR out by C-STORE or STOW-RS."""
