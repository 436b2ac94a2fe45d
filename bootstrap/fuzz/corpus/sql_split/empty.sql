
  ;;
-- only a comment
